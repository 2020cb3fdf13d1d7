"""Jobs across a crash: what the store keeps, and what a restart makes of it.

Every test kills (or stops) a real ``puller serve`` and starts another on the
same state dir; the daemon and registries are the test ground's.
"""

import json
import os
import signal
import socket
import sqlite3
import stat
import threading
import time

import pytest
import requests

from conftest import report
from faultproxy import FaultProxy, Rules
from test_jobs import create, get, wait_ended
from test_platforms import multi  # noqa: F401  # pylint: disable=unused-import

STORE_FILES = ("puller.db", "puller.db-wal", "puller.db-shm", "lock")


class DaemonProxy:
    """A unix-socket proxy in front of dockerd that holds the ``hold``-th image
    listing (``GET /images/json``) until ``release`` is set: the engine lists
    the daemon's images once before a job's pulls and once after them."""

    def __init__(self, target, path, hold):
        self.target, self.path, self.hold = target, str(path), hold
        self.listings = 0
        self.held, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX)
        self._sock.bind(self.path)
        self._sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _addr = self._sock.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src, dst, to_daemon):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_daemon and b"/images/json" in data:
                    with self._lock:
                        self.listings += 1
                        n = self.listings
                    if n == self.hold:
                        self.held.set()
                        self.release.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.release.set()
        self._sock.close()


def _restart(start_server, server, *args, sig=signal.SIGKILL):
    server.proc.send_signal(sig)
    server.proc.wait(60)
    again = start_server("--state-dir", str(server.state_dir), *args)
    again.state_dir = server.state_dir
    return again


def _wait_for(server, job_id, check, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = get(server, job_id).json()
        if check(job):
            return job
        time.sleep(0.05)
    raise AssertionError("job %s never got there: %s" % (job_id, job))


def _stored(server, job_id):
    db = sqlite3.connect(str(server.state_dir / "puller.db"))
    try:
        (request,) = db.execute("SELECT request FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(request)
    finally:
        db.close()


# -- a job whose images had all ended -------------------------------------------------------------------------------
def test_a_job_killed_after_its_last_image_ends_with_its_report(clean, start_server, tmp_path):
    """SIGKILL while the engine lists the daemon's images after the pulls: every
    image's row is in the store, the job's end is not."""
    proxy = DaemonProxy(clean.socket, tmp_path / "docker.sock", hold=2)
    try:
        server = start_server("--docker-socket", proxy.path)
        images = [clean.image(1), clean.image(2), clean.image(99)]
        job_id = create(server, {"images": images, "concurrency": 3, "retry": 1}).json()["id"]
        assert proxy.held.wait(60), "the listing after the pulls never came"
        before = get(server, job_id).json()
        assert before["status"] == "running" and before["active"] == 0, before
        assert [i["phase"] for i in before["images"]] == ["succeeded", "succeeded", "failed"]
        again = _restart(start_server, server)
    finally:
        proxy.close()
    job = wait_ended(again, job_id, timeout=30)
    assert job["status"] == "failed" and "error" not in job and job["resumed"] == 1, job
    assert [r["image"] for r in job["report"]["success"]] == images[:2]
    assert [r["image"] for r in job["report"]["failure"]] == images[2:]
    assert [i["row"]["status"] for i in job["images"]] == ["pulled", "pulled", "failed"]
    assert "Traceback" not in again.log() and "unexpectedly" not in again.log()


@pytest.mark.parametrize("last_row", ["succeeded", "failed"])
def test_a_stored_job_with_nothing_left_ends_with_its_report_at_the_start(clean, start_server, last_row):
    """The same state, written into the store of a stopped server."""
    server = start_server()
    images = [clean.image(1), clean.image(2) if last_row == "succeeded" else clean.image(98)]
    job_id = create(server, {"images": images, "retry": 1}).json()["id"]
    ended = wait_ended(server, job_id)
    assert server.stop() == 0
    db = sqlite3.connect(str(server.state_dir / "puller.db"))
    with db:
        db.execute("UPDATE jobs SET status = 'running', finished = NULL, finished_ts = NULL, report = NULL "
                   "WHERE id = ?", (job_id,))
    db.close()
    again = start_server("--state-dir", str(server.state_dir))
    job = wait_ended(again, job_id, timeout=30)
    assert job["status"] == last_row and "error" not in job and job["resumed"] == 1, job
    assert [i["row"] for i in job["images"]] == [i["row"] for i in ended["images"]]
    rows = job["report"]["success"] + job["report"]["failure"]
    assert sorted(r["image"] for r in rows) == sorted(images)


# -- what a resumed pull keeps ---------------------------------------------------------------------------------------
@pytest.fixture
def index_proxy(ground):
    """The fault proxy forwarding every Accept header: with only one, the registry
    answers an index with its linux/amd64 manifest, whatever the platform asked."""
    p = FaultProxy(ground.registry_port, preserve_headers=True)
    yield p
    p.close()


@pytest.mark.parametrize("where", ["request", "image"])
def test_a_resumed_job_pulls_the_platform_it_was_asked_for(clean, start_server, index_proxy, multi,  # noqa: F811
                                                          where):
    index, ids = multi
    proxy = index_proxy
    slow = index.replace(clean.registry, proxy.address, 1)
    proxy.reset_stats(Rules(delay=30))
    server = start_server()
    body = ({"images": [slow], "platform": "linux/arm64"} if where == "request" else
            {"images": [{"image": slow, "platform": "linux/arm64"}]})
    body.update(retry=2, timeout="2m", pull="always", concurrency=1)
    job_id = create(server, body).json()["id"]
    _wait_for(server, job_id, lambda job: job["active"] == 1)
    stored = _stored(server, job_id)
    platform = stored["platform"] if where == "request" else stored["images"][0]["platform"]
    assert platform == "linux/arm64"
    assert (stored["retry"], stored["timeout"], stored["pull"], stored["concurrency"]) == (2, "2m", "always", 1)
    proxy.reset_stats(Rules())
    again = _restart(start_server, server)
    job = wait_ended(again, job_id)
    assert job["status"] == "succeeded" and job["resumed"] == 1, job
    (image,) = job["images"]
    assert image["row"]["platform"] == "linux/arm64" and image["row"]["id"] == ids["linux/arm64"]
    held = clean.client().inspect_image(slow)
    assert (held["Os"], held["Architecture"]) == ("linux", "arm64")


def test_the_store_keeps_no_credentials(clean, start_server, proxy):
    proxy.reset_stats(Rules(delay=30))
    server = start_server("--allow-request-mirrors")
    secret = clean.password
    body = {"images": [{"image": clean.private_image(1), "auth_config": {"username": clean.user, "password": secret}},
                       clean.image(3, registry=proxy.address)],
            "mirrors": {clean.registry: [proxy.address]},
            "mirror_auth": {proxy.address: {"username": clean.user, "password": secret}}}
    job_id = create(server, body).json()["id"]
    _wait_for(server, job_id, lambda job: job["succeeded"] == 1)
    stored = _stored(server, job_id)
    assert "mirror_auth" not in stored and stored["mirrors"] == {clean.registry: [proxy.address]}
    assert stored["images"][0] == {"image": clean.private_image(1), "had_credentials": True}
    for name in STORE_FILES:
        path = server.state_dir / name
        if path.exists():
            assert secret.encode() not in path.read_bytes(), name
    assert requests.delete(server.url + "/jobs/" + job_id, timeout=30).status_code == 200


# -- stored jobs this server now refuses -----------------------------------------------------------------------------
def test_stored_jobs_the_settings_now_refuse_end_failed_and_the_others_resume(clean, start_server):
    refused, kept = FaultProxy(clean.registry_port), FaultProxy(clean.registry_port)
    try:
        for p in (refused, kept):
            p.reset_stats(Rules(delay=30))
        server = start_server("--allow-registry", "localhost:*", "--allow-request-mirrors")
        ids = {
            "registry": create(server, {"images": [clean.image(4), clean.image(5, registry=refused.address)],
                                        "concurrency": 2}).json()["id"],
            "mirrors": create(server, {"images": [clean.image(6)],
                                       "mirrors": {clean.registry: [kept.address]}}).json()["id"],
            "kept": create(server, {"images": [clean.image(7, registry=kept.address)]}).json()["id"],
        }
        _wait_for(server, ids["registry"], lambda job: job["succeeded"] == 1)
        for job_id in ids.values():
            _wait_for(server, job_id, lambda job: job["active"] >= 1)
        kept.reset_stats(Rules())
        admits = ("--allow-registry", clean.registry, "--allow-registry", kept.address)
        again = _restart(start_server, server, *admits)
        by_registry = wait_ended(again, ids["registry"])
        assert by_registry["status"] == "failed" and by_registry["resumed"] == 0, by_registry
        first, second = by_registry["images"]
        assert first["row"]["status"] == "pulled"  # it had ended before the restart
        assert second["row"]["status"] == "failed"
        assert second["row"]["errmsg"] == "not resumed: --allow-registry no longer admits registry %s" % refused.address
        by_mirrors = wait_ended(again, ids["mirrors"])
        assert by_mirrors["status"] == "failed", by_mirrors
        assert "request mirrors need --allow-request-mirrors" in by_mirrors["images"][0]["row"]["errmsg"]
        assert len(by_registry["report"]["failure"]) == 1 and len(by_mirrors["report"]["failure"]) == 1
        resumed = wait_ended(again, ids["kept"])
        assert resumed["status"] == "succeeded" and resumed["resumed"] == 1, resumed
        log = again.log()
        for what in ("registry", "mirrors"):
            assert len([line for line in log.splitlines() if ids[what] in line and "not resumed" in line]) == 1, log
        assert "resumed 1 job(s)" in log and ids["kept"] in log
        # Ended now: later starts do not meet them again.
        third = _restart(start_server, again, *admits, sig=signal.SIGTERM)
        assert get(third, ids["registry"]).json()["status"] == "failed"
        assert "not resumed" not in third.log()
    finally:
        refused.close()
        kept.close()


# -- file modes --------------------------------------------------------------------------------------------------------
def _modes(state_dir):
    return {name: stat.S_IMODE(os.stat(state_dir / name).st_mode)
            for name in STORE_FILES if (state_dir / name).exists()}


def test_the_store_is_readable_by_its_owner_only(clean, start_server, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o755)
    server = start_server("--state-dir", str(state))
    wait_ended(server, create(server, {"images": [clean.image(1)]}).json()["id"])
    before = _modes(state)
    assert set(before) == set(STORE_FILES), before  # WAL and shared memory exist while the server runs
    assert before == dict.fromkeys(STORE_FILES, 0o600), before
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    server.stop()
    # A store left readable by others (as earlier versions made it) is tightened at the start.
    os.chmod(state, 0o755)
    for name in _modes(state):
        os.chmod(state / name, 0o644)
    again = start_server("--state-dir", str(state))
    wait_ended(again, create(again, {"images": [clean.image(1)], "dry_run": True}).json()["id"])
    after = _modes(state)
    assert after == dict.fromkeys(STORE_FILES, 0o600), after
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    report(clean, "store modes: files %s, dir 0700 (a 0755 dir and 0644 files are tightened at the start)"
           % ", ".join("%s %o" % kv for kv in sorted(after.items())))
