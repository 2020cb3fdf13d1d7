"""``puller serve --runtime-endpoint`` against the test ground's private
containerd (its CRI plugin on, as on a Kubernetes node) and registries: the
seed contract, retries, shared pulls, jobs, stalls, a runtime that goes away,
what the CRI cannot do, and ``/debug/dump``."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import LEAKS, ROOT, free_port, report
from criwatch import AgentProxy, empty_store
from faultproxy import FaultProxy, Rules
from puller.core._cri_api import CriClient
from puller.core._godur import parse_duration
import test_cri_client
import test_runtime_cri
from test_cri_client import SlowProxy, _containerd, ctr_images, registry_digest, wait_until

cri_env, big_set = test_cri_client.cri_env, test_runtime_cri.big_set

BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]+$")
WRONG_PASSWORD = "Wr0ng-CriServer-Pa55"
LEAKS.secrets.add(WRONG_PASSWORD)


@pytest.fixture
def cri(cri_env):
    """A client of the private containerd, with no image and no blob before and after."""
    client = CriClient(cri_env["PULLER_TEST_CRI_SOCKET"], timeout=20)
    empty_store(client, cri_env)
    yield client
    empty_store(client, cri_env)
    client.close()


@pytest.fixture
def cri_server(cri, start_server):
    return start_server(runtime="cri")


def create_job(server, body):
    resp = requests.post(server.url + "/jobs", json=body, timeout=10)
    server.bodies.append(resp.text)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def get_job(server, job_id):
    resp = requests.get(server.url + "/jobs/" + job_id, timeout=10)
    server.bodies.append(resp.text)
    return resp.json()


def test_seed_shaped_request_over_cri(cri, cri_server, ground, cri_env):
    images = [{"image": ground.image(n), "tag": "latest", "project": "p%d" % n} for n in (1, 2, 3)]
    images.append({"image": ground.private_image(1), "tag": "latest", "project": "priv",
                   "auth_config": {"username": ground.user, "password": ground.password}})
    resp = cri_server.pull({"concurrency": 10, "retry": 3, "images": images})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"success", "failure", "startAt", "cost"} and body["failure"] == []
    assert [r["project"] for r in body["success"]] == ["p1", "p2", "p3", "priv"]
    listed = ctr_images(cri_env)
    for image, row in zip(images, body["success"]):
        registry, _sep, path = image["image"].partition("/")
        auth = (ground.user, ground.password) if "auth_config" in image else None
        assert row["digest"] == registry_digest(registry, path, auth=auth), row
        assert (row["retried"], row["errmsg"], row["status"]) == (1, "", "pulled")
        assert parse_duration(row["cost"]) > 0
        status = cri.image_status(image["image"] + ":latest")
        assert status is not None and row["id"] == status["id"]
        assert "%s@%s" % (image["image"], row["digest"]) in status["repo_digests"]
        assert image["image"] + ":latest" in listed
    again = cri_server.pull({"images": images}).json()["success"]
    assert [r["status"] for r in again] == ["up_to_date"] * 4 and [r["id"] for r in again] == [
        r["id"] for r in body["success"]]


def test_missing_image_and_wrong_credentials_fail_after_one_attempt(cri, cri_server, ground):
    for image in ({"image": ground.registry + "/fixture/does-not-exist", "tag": "latest"},
                  {"image": ground.private_image(1), "tag": "latest",
                   "auth_config": {"username": ground.user, "password": WRONG_PASSWORD}}):
        resp = cri_server.pull({"retry": 5, "images": [image]})
        assert resp.status_code == 500, resp.text
        (row,) = resp.json()["failure"]
        assert row["retried"] == 1 and row["status"] == "failed" and row["errmsg"], row
        assert WRONG_PASSWORD not in resp.text
    assert "not found" in cri_server.bodies[-2] and "401" in cri_server.bodies[-1]
    assert cri_server.log().count("attempt 2/") == 0


@pytest.mark.parametrize("rules", [Rules(reset_first=2), Rules(fail_first=2)], ids=["reset", "503"])
def test_a_flaky_registry_is_retried_then_succeeds(cri, cri_server, ground, proxy, rules):
    proxy.reset_stats(rules)
    image = ground.image(13, registry=proxy.address)
    resp = cri_server.pull({"retry": 5, "images": [image]})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["success"]
    assert row["retried"] > 1 and proxy.injected == 2, (row, proxy.manifest_requests)
    assert row["digest"] == registry_digest(ground.registry, "fixture/img-13")
    assert cri.image_status(image + ":latest")["id"] == row["id"]


def test_ten_identical_requests_make_one_registry_pull(cri, cri_server, ground):
    proxy = AgentProxy(ground.registry_port)
    try:
        image = ground.image(6, registry=proxy.address)
        proxy.reset_stats(Rules(delay=0.5))  # the manifests are held: the requests overlap
        body = {"images": [{"image": image, "tag": "latest", "project": "p"}]}
        results = [None] * 10

        def one(i):
            results[i] = cri_server.pull(body)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [r.status_code for r in results] == [200] * 10
        assert len({r.json()["success"][0]["id"] for r in results}) == 1
        by_containerd = [c for a, c in proxy.agents if not a.startswith("puller")]
        # One pull by containerd: HEAD by tag (resolve), GET by digest.
        assert by_containerd.count("GET") == 1, proxy.agents
        assert proxy.puller_gets() == ["GET"]  # puller's own manifest, for the layers' progress
        assert cri_server.log().count("attempt 1/") == 1, cri_server.log()
        report(ground, "cri server: 10 identical /pull at once: %d containerd manifest request(s), 1 attempt"
               % len(by_containerd))
        proxy.reset_stats(Rules())
        proxy.agents.clear()
        resp = cri_server.pull({"pull": "missing", "images": [image]})
        assert resp.json()["success"][0]["status"] == "present" and resp.json()["success"][0]["retried"] == 0
        assert proxy.agents == [] and proxy.manifest_requests == []
    finally:
        proxy.close()


def _progress_of(server, job_id, timeout=120):
    seen, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        job = get_job(server, job_id)
        seen.append(job["progress"])
        if job["status"] not in ("queued", "running"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError("job %s did not end: %s" % (job_id, seen))


def test_a_job_of_20_images_through_a_slow_registry_rises_to_100(cri, cri_server, ground):
    slow = SlowProxy(ground.registry_port, rate=128 << 10)  # a 64 KiB layer takes half a second
    try:
        images = [ground.image(n, registry=slow.address) for n in range(1, 21)]
        t0 = time.monotonic()
        job, seen = _progress_of(cri_server, create_job(cri_server, {"images": images, "concurrency": 4}))
        seconds = time.monotonic() - t0
    finally:
        slow.close()
    assert job["status"] == "succeeded" and job["progress"] == 100, job
    assert (job["desired"], job["succeeded"], job["failed"]) == (20, 20, 0)
    assert seen == sorted(seen), seen
    steps = sorted(set(seen))
    assert steps[-1] == 100 and len(steps) >= 8, steps  # in steps, not 0 then 100
    assert all(image["row"]["status"] == "pulled" for image in job["images"])
    report(ground, "cri server: a job of 20 images through a 128 KiB/s registry: %.1fs, %d distinct progress "
           "figures polled" % (seconds, len(steps)))


def test_delete_stops_containerd_s_downloads_and_leaves_no_partial_image(cri, cri_server, ground, big_set, cri_env):
    slow = SlowProxy(ground.registry_port, rate=1 << 20)  # two 4 MiB layers each: ~4 s a pull
    try:
        images = ["%s/%s" % (slow.address, name) for name in big_set]
        job_id = create_job(cri_server, {"images": images, "concurrency": 2})
        assert wait_until(lambda: len(cri.ingests()) >= 2, 30), "containerd never started downloading"
        assert wait_until(lambda: any(offset >= 1 << 20 for _r, offset, _t in cri.ingests()), 30)
        t0 = time.monotonic()
        resp = requests.delete(cri_server.url + "/jobs/" + job_id, timeout=30)
        took = time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        job = resp.json()
        assert job["status"] == "cancelled" and [i["phase"] for i in job["images"]] == ["cancelled"] * 2, job
        assert wait_until(lambda: cri.ingests() == [], 5), cri.ingests()

        def stopped():  # at 1 MiB/s a download still running would send ~512 KiB in half a second
            sent = slow.bytes_out
            time.sleep(0.5)
            return slow.bytes_out - sent < 16 << 10

        # What the proxy had taken before the cancel drains for a moment; then nothing more comes.
        assert wait_until(stopped, 5), "containerd kept downloading"
        sent = slow.bytes_out
        assert all(cri.image_status(image + ":latest") is None for image in images)
        assert not any(name.startswith(slow.address) for name in ctr_images(cri_env))
    finally:
        slow.close()
    report(ground, "cri server: DELETE of a job with 2 CRI pulls in flight answered in %.2fs, %.1f of 16 MiB sent"
           % (took, sent / (1 << 20)))


def test_a_stalled_blob_is_aborted_at_the_stall_timeout_and_retried(cri, ground, start_server):
    server = start_server("--stall-timeout", "2s", runtime="cri")
    stuck = FaultProxy(ground.registry_port)
    try:
        stuck.reset_stats(Rules(pattern=BLOB_PATH, hang_body_first=3, hang=25))
        image = ground.image(10, registry=stuck.address)
        t0 = time.monotonic()
        resp = server.pull({"images": [image], "retry": 3})
        took = time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert row["retried"] >= 2 and row["digest"] == registry_digest(ground.registry, "fixture/img-10"), row
        assert "stalled: " in server.log() and "sent nothing for 2s" in server.log(), server.log()
        assert took < 20, took
        # Every blob hangs: the request's deadline ends it, stall retries and all.
        stuck.reset_stats(Rules(pattern=BLOB_PATH, hang_body_first=1000, hang=30))
        t0 = time.monotonic()
        resp = server.pull({"images": [ground.image(11, registry=stuck.address)], "retry": 10, "timeout": "5s"})
        late = time.monotonic() - t0
        assert resp.status_code == 500, resp.text
        (row,) = resp.json()["failure"]
        assert "timeout" in row["errmsg"] and "5s" in row["errmsg"], row
        assert 4.5 <= parse_duration(row["cost"]) <= 7.0 and late < 9, (row, late)
        assert wait_until(lambda: cri.ingests() == [], 5)
        assert cri.image_status(ground.image(11, registry=stuck.address) + ":latest") is None
    finally:
        stuck.close()
    report(ground, "cri server: a blob stalled mid-body: aborted at the 2s stall timeout, pulled in %.1fs; "
           "all blobs stalled, 5s deadline: ended in %.1fs" % (took, late))


def test_containerd_stopped_is_503_and_the_server_recovers(cri, cri_server, ground):
    _containerd(ground, "containerd-stop")
    try:
        resp = cri_server.pull({"images": [ground.image(17)]})
        assert resp.status_code == 503, resp.text
        assert resp.headers["Content-Type"] == "application/json" and resp.headers["Retry-After"]
        assert resp.json()["field"] == "runtime_endpoint" and "CRI runtime" in resp.json()["error"], resp.text
        assert requests.get(cri_server.url + "/ping").text == "OK"
        dump = requests.get(cri_server.url + "/debug/dump").json()
        assert "error" in dump["daemon"]
    finally:
        _containerd(ground, "containerd-start")
    assert wait_until(lambda: cri_server.pull({"images": [ground.image(17)]}).status_code == 200, 20, step=0.5), \
        cri_server.bodies[-1]


def test_a_hung_containerd_is_answered_by_the_deadline_then_503_until_it_is_back(
        cri, cri_server, ground, big_set, cri_env):
    """containerd frozen (SIGSTOP: its socket accepts, nothing answers) mid-pull, as a hung dockerd."""
    pid = int(Path(cri_env["PULLER_TEST_CRI_SOCKET"]).with_name("pid").read_text())
    slow = SlowProxy(ground.registry_port, rate=1 << 20)  # ~4 s a pull: frozen while it runs
    try:
        later = cri_server.pull_later({"images": ["%s/%s" % (slow.address, big_set[1])], "timeout": "3s",
                                       "retry": 1})
        time.sleep(1.0)
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            resp = later.result(30)
            answered = time.monotonic() - t0
            assert resp.status_code == 500 and "timeout" in resp.json()["failure"][0]["errmsg"], resp.text
            assert answered < 2 + 2.5, answered  # its 3 s deadline (2 s of it left), and the listing's grace
            t1 = time.monotonic()
            frozen = cri_server.pull({"images": [ground.image(18)], "timeout": "3s"})
            refused = time.monotonic() - t1
            assert frozen.status_code == 503 and frozen.json()["field"] == "runtime_endpoint", frozen.text
            assert refused < 3 + 1, refused  # the check is bounded by the request's deadline
            assert requests.get(cri_server.url + "/ping", timeout=5).text == "OK"
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        slow.close()
    assert wait_until(lambda: cri_server.pull({"images": [ground.image(18)]}).status_code == 200, 20, step=0.5), \
        cri_server.bodies[-1]
    report(ground, "cri server: containerd frozen mid-pull: the 3 s request answered %.1fs later (timeout), the "
           "next one 503 in %.1fs, 200 once it thawed" % (answered, refused))


def test_what_the_cri_cannot_do_is_a_400_naming_the_field(cri, ground, start_server):
    plain, permissive = start_server(runtime="cri"), start_server("--allow-request-mirrors", runtime="cri")
    image = ground.image(5)
    for body, field in (({"platform": "linux/arm64", "images": [image]}, "platform"),
                        ({"images": [{"image": image, "platform": "linux/arm64"}]}, "images[0].platform"),
                        ({"images": [image, {"image": image, "platform": "linux/arm/v7"}]}, "images[1].platform")):
        resp = plain.pull(body)
        assert resp.status_code == 400 and resp.json()["field"] == field, resp.text
        assert "linux/amd64" in resp.json()["error"] and "own platform" in resp.json()["error"]
    for server in (plain, permissive):
        resp = server.pull({"images": [image], "mirrors": {ground.registry: ["localhost:9"]}})
        assert resp.status_code == 400 and resp.json()["field"] == "mirrors", resp.text
        assert "bbklab.puller.cri_mirrors" in resp.json()["error"]
        resp = requests.post(server.url + "/jobs", json={"images": [image], "mirrors": {ground.registry: ["m:5"]}},
                             timeout=10)
        assert resp.status_code == 400 and resp.json()["field"] == "mirrors", resp.text
    assert cri.list_images() == []  # nothing was pulled for any of them
    # The node's own platform, however spelled, is pulled.
    for platform in ("linux/amd64", "linux/x86_64"):
        resp = plain.pull({"platform": platform, "images": [image]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["success"][0]["platform"] == "linux/amd64"


def _serve(args, timeout=30):
    return subprocess.run([sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % free_port()] + args,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_a_mirror_map_or_two_runtimes_stop_the_start(cri_env, ground, tmp_path):
    endpoint = cri_env["PULLER_TEST_CRI_ENDPOINT"]
    result = _serve(["--runtime-endpoint", endpoint, "--state-dir", str(tmp_path / "a"),
                     "--mirror", "%s=localhost:9" % ground.registry])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--mirror" in result.stderr and "bbklab.puller.cri_mirrors" in result.stderr
    result = _serve(["--runtime-endpoint", endpoint, "--docker-socket", ground.socket,
                     "--state-dir", str(tmp_path / "b")])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--runtime-endpoint" in result.stderr and "--docker-socket" in result.stderr


def test_debug_dump_names_containerd_and_its_version(cri_server, cri_env):
    out = subprocess.run([cri_env["PULLER_TEST_CTR"], "--address", cri_env["PULLER_TEST_CRI_SOCKET"], "version"],
                         check=True, capture_output=True, text=True).stdout
    version = re.search(r"Server:\s+Version:\s+(\S+)", out).group(1)
    dump = requests.get(cri_server.url + "/debug/dump", timeout=10).json()
    assert dump["daemon"] == {"engine": "containerd", "version": version, "api_version": "v1"}, dump["daemon"]
    assert dump["configs"]["runtime_endpoint"] == cri_env["PULLER_TEST_CRI_ENDPOINT"]
    assert "containerd at " + cri_env["PULLER_TEST_CRI_ENDPOINT"] in cri_server.log()


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "puller", "pull"] + list(args), capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_cli_pull_over_cri_exit_codes(cri, ground, cri_env):
    endpoint = ["--runtime-endpoint", cri_env["PULLER_TEST_CRI_ENDPOINT"]]
    done = _cli(*endpoint, ground.image(20), ground.image(21))
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[1:3]] == ["pulled", "pulled"], done.stdout
    assert cri.image_status(ground.image(20) + ":latest") and cri.image_status(ground.image(21) + ":latest")
    missing = _cli(*endpoint, ground.registry + "/fixture/does-not-exist")
    assert missing.returncode == 1 and "failed" in missing.stdout, missing.stdout + missing.stderr
    wrong = _cli(*endpoint, "--platform", "linux/arm64", ground.image(20))
    assert wrong.returncode == 2 and "platform" in wrong.stderr, wrong.stderr
    _containerd(ground, "containerd-stop")
    try:
        down = _cli(*endpoint, ground.image(22), timeout=60)
    finally:
        _containerd(ground, "containerd-start")
    assert down.returncode == 3 and "CRI runtime" in down.stderr, down.stdout + down.stderr
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr


@pytest.fixture(scope="session")
def python_without_grpc(ground):
    """A venv with every library of the project's but grpcio and protobuf (an install without ``puller[cri]``)."""
    import sysconfig

    root = Path(ground.dir) / "no-grpc"
    python = root / "venv" / "bin" / "python"
    if not python.exists():
        site = root / "site"
        site.mkdir(parents=True, exist_ok=True)
        packages = Path(sysconfig.get_paths()["purelib"])
        for entry in packages.iterdir():
            if not entry.name.lower().startswith(("grpc", "google", "protobuf")):
                (site / entry.name).symlink_to(entry)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "project-but-grpc.pth").write_text("import site; site.addsitedir(%r)\n" % str(site))
    assert subprocess.run([str(python), "-c", "import grpc"], capture_output=True, check=False).returncode != 0
    assert subprocess.run([str(python), "-c", "import docker, gevent, bottle"], capture_output=True,
                          check=False).returncode == 0
    return str(python)


def test_without_grpcio_the_cri_is_one_line_naming_the_libraries(python_without_grpc, cri_env, tmp_path):
    endpoint = ["--runtime-endpoint", cri_env["PULLER_TEST_CRI_ENDPOINT"]]
    said = {}
    for args in (["serve", "--listen", "127.0.0.1:%d" % free_port(), "--state-dir", str(tmp_path)] + endpoint,
                 ["pull"] + endpoint + ["busybox"]):
        result = subprocess.run([python_without_grpc, "-m", "puller"] + args, capture_output=True, text=True,
                                timeout=60, check=False, cwd=str(ROOT))
        assert result.returncode == 3, (args[0], result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "grpcio and protobuf" in result.stderr
        said[args[0]] = result.stderr
    assert "pip install 'puller[cri]'" in said["serve"]
