"""Preheat at the edges: ``puller preheat`` (CLI) and the server's ``preheat``
jobs, then the fan-out those reports feed (``puller pull --digests``, the
API's ``images[].digest``) with the origin refusing everything."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import docker
import pytest
import requests

from conftest import LEAKS, TESTENV
from faultproxy import FaultProxy, Rules
from preheatkit import site  # noqa: F401  pylint: disable=unused-import  # the fixture
from test_cri_client import registry_digest

EVERYTHING = re.compile(r".*")


@pytest.fixture
def origin(ground):
    """The open registry behind a proxy that can be told to refuse every request."""
    proxy = FaultProxy(ground.registry_port, preserve_headers=True)
    yield proxy
    proxy.close()


def refuse_all(proxy):
    proxy.reset_stats(Rules(pattern=EVERYTHING, reset_first=10 ** 9))


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "puller"] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_cli_preheat_then_hosts_pull_by_its_report_with_the_origin_down(ground, site, origin, tmp_path):
    release = ["%s/fixture/img-%02d:latest" % (origin.address, n) for n in (1, 2, 3)]
    done = cli("preheat", "--to", site.address, "--json", *release)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = report["success"]
    for row, n in zip(rows, (1, 2, 3)):
        assert row["digest"] == registry_digest(ground.registry, "fixture/img-%02d" % n)
        assert row["site"] == site.address and row["bytes_copied"] > 0, row
        assert registry_digest(site.address, "fixture/img-%02d" % n) == row["digest"]
    again = json.loads(cli("preheat", "--to", site.address, "--json", *release).stdout)
    assert [row["bytes_copied"] for row in again["success"]] == [0, 0, 0], again  # the site had every blob
    assert all(row["blobs_skipped"] > 0 for row in again["success"])
    (tmp_path / "preheat.json").write_text(done.stdout)
    hosts = subprocess.run(["bash", str(TESTENV), "hosts", ground.dir, "2"], check=True, capture_output=True,
                           text=True).stdout.split()
    refuse_all(origin)
    for sock in hosts:
        client = docker.APIClient(base_url="unix://" + sock, version="auto")
        client.prune_images(filters={"dangling": False})
        pulled = cli("pull", "--docker-socket", sock, "--json", "--digests", str(tmp_path / "preheat.json"),
                     "--mirror", "%s=%s" % (origin.address, site.address))
        assert pulled.returncode == 0, pulled.stderr
        for row, image in zip(json.loads(pulled.stdout)["success"], release):
            assert client.inspect_image(image)["Id"] == row["id"] and row["source"] == site.address
    assert origin.manifest_requests == []  # refused or not: not one was asked of the origin


def test_cli_preheat_exit_codes(ground, site):
    missing = cli("preheat", "--to", site.address, "%s/fixture/absent:1" % ground.registry)
    assert missing.returncode == 1 and "absent" in missing.stdout + missing.stderr, missing
    assert cli("preheat", "--to", "not a host", ground.image(1)).returncode == 2
    down = cli("preheat", "--to", "127.0.0.1:9", ground.image(1))
    assert down.returncode == 3 and "127.0.0.1:9" in down.stderr, down


def _wait(server, job_id):
    for _i in range(600):
        job = requests.get(server.url + "/jobs/" + job_id, timeout=10).json()
        if job["status"] not in ("queued", "running"):
            server.bodies.append(json.dumps(job))
            return job
        time.sleep(0.1)
    raise AssertionError("job %s did not end" % job_id)


def _scan_cmdlines(secret, stop, seen):
    """Every command line on the host while a copy runs: none may hold the secret."""
    while not stop.is_set():
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmdline = Path("/proc", pid, "cmdline").read_bytes()
                except OSError:
                    continue
                if b"skopeo" in cmdline:
                    seen["skopeo"] = seen.get("skopeo", 0) + 1
                if secret.encode() in cmdline:
                    seen.setdefault("leaks", []).append(cmdline[:80])
        time.sleep(0.01)


def test_server_preheat_job_with_the_server_s_credentials_to_an_admitted_site(
        ground, site, start_server, tmp_path):
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({ground.auth_registry: {"username": ground.user,
                                                              "password": ground.password}}))
    credentials.chmod(0o600)
    server = start_server("--preheat-site", site.address, "--credentials-file", str(credentials))
    body = {"preheat": {"to": site.address}, "images": [ground.private_image(1), ground.image(4)]}
    stop, seen = threading.Event(), {}
    scanner = threading.Thread(target=_scan_cmdlines, args=(ground.password, stop, seen), daemon=True)
    scanner.start()
    try:
        created = requests.post(server.url + "/jobs", json=body, timeout=10)
        assert created.status_code == 202 and created.json()["kind"] == "preheat", created.text
        job = _wait(server, created.json()["id"])
    finally:
        stop.set()
        scanner.join()
    assert job["status"] == "succeeded", job
    private, public = job["report"]["success"]
    assert private["digest"] == registry_digest(ground.auth_registry, "private/img-01",
                                                auth=(ground.user, ground.password))
    assert registry_digest(site.address, "private/img-01") == private["digest"]
    assert public["digest"] == registry_digest(site.address, "fixture/img-04")
    assert seen.get("skopeo") and not seen.get("leaks"), seen
    state = b"".join(p.read_bytes() for p in Path(server.state_dir).iterdir() if p.is_file())
    assert ground.password.encode() not in state  # the job store keeps no credentials


def test_server_refuses_preheats_it_was_not_told_to_make(ground, site, start_server):
    server = start_server("--preheat-site", site.address)
    elsewhere = requests.post(server.url + "/jobs", json={"preheat": {"to": "127.0.0.1:5999"},
                                                          "images": [ground.image(1)]}, timeout=10)
    assert elsewhere.status_code == 403 and elsewhere.json()["field"] == "preheat.to", elsewhere.text
    assert site.address in elsewhere.json()["error"]
    cases = [({"preheat": {"to": site.address}, "images": [ground.image(1)], "mirrors": {ground.registry: [
        site.address]}}, 400, "mirrors"),
        ({"preheat": {"to": site.address}, "images": [{"image": ground.image(1), "platform": "linux/arm64"}]},
         400, "images[0].platform"),
        ({"preheat": {"too": site.address}, "images": [ground.image(1)]}, 400, "preheat.too"),
        ({"preheat": "site", "images": [ground.image(1)]}, 400, "preheat"),
        ({"preheat": {"to": site.address}, "images": ["%s/fixture/img-01" % site.address]}, 400, "images[0].image")]
    for body, status, field in cases:
        resp = requests.post(server.url + "/jobs", json=body, timeout=10)
        assert (resp.status_code, resp.json().get("field")) == (status, field), (body, resp.text)
    on_pull = server.pull({"preheat": {"to": site.address}, "images": [ground.image(1)]})
    assert on_pull.status_code == 400 and on_pull.json()["field"] == "preheat"
    plain = start_server()
    none = requests.post(plain.url + "/jobs", json={"preheat": {"to": site.address}, "images": [ground.image(1)]},
                         timeout=10)
    assert none.status_code == 403 and "none" in none.json()["error"], none.text


LEAKS.secrets.add("Preheat-Unused-Pw-7")  # named in no test yet: the guard reads every log for it anyway


def test_a_preheat_job_resumes_after_a_kill_and_a_refused_site_ends_it_failed(ground, site, origin, start_server):
    """SIGKILL mid-preheat: the job resumes on the next start as a preheat to its site; a start that no longer
    names the site ends it failed, naming the setting."""
    origin.reset_stats(Rules(delay=2.0))  # each manifest takes a while: the job is caught mid-way
    server = start_server("--preheat-site", site.address)
    release = ["%s/fixture/img-%02d:latest" % (origin.address, n) for n in (10, 11, 12, 13)]
    created = requests.post(server.url + "/jobs", json={"preheat": {"to": site.address}, "images": release,
                                                        "concurrency": 1}, timeout=10).json()
    for _i in range(200):
        if requests.get(server.url + "/jobs/" + created["id"], timeout=10).json()["succeeded"] >= 1:
            break
        time.sleep(0.1)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)
    origin.reset_stats(Rules())
    again = start_server("--state-dir", str(server.state_dir), "--preheat-site", site.address)
    job = _wait(again, created["id"])
    assert (job["kind"], job["status"], job["resumed"]) == ("preheat", "succeeded", 1), job
    assert [row["site"] for row in job["report"]["success"]] == [site.address] * 4
    assert all(registry_digest(site.address, "fixture/img-%02d" % n) for n in (10, 11, 12, 13))

    origin.reset_stats(Rules(delay=2.0))
    second = requests.post(again.url + "/jobs", json={"preheat": {"to": site.address}, "images": release[:2],
                                                      "concurrency": 1}, timeout=10).json()
    again.proc.send_signal(signal.SIGKILL)
    again.proc.wait(30)
    third = start_server("--state-dir", str(server.state_dir))  # no --preheat-site any more
    ended = _wait(third, second["id"])
    assert ended["status"] == "failed", ended
    assert all("not resumed" in row["errmsg"] and "--preheat-site" in row["errmsg"]
               for row in ended["report"]["failure"]), ended["report"]
