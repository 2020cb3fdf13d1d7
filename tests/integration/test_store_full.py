"""A full disk under the state dir, against the real daemon and registry.

The state dir is a 2 MiB tmpfs filled up with a file while jobs run: new jobs
are refused with a 503 naming the store, the running ones end with their true
status, a ``/pull`` in flight gets its answer, and once the file is deleted
new jobs are accepted again and what was kept in memory reaches the store.
"""

import contextlib
import errno
import os
import subprocess
import time

import requests

from faultproxy import Rules

FULL = ("database or disk is full", "No space left on device")


@contextlib.contextmanager
def small_filesystem(path, size="2m"):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path):
    """Write a file until the filesystem says it is full; returns its path."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bavail == 0
    return filler


def create(server, body):
    resp = requests.post(server.url + "/jobs", json=body, timeout=30)
    server.bodies.append(resp.text)
    return resp


def job_of(server, job_id):
    resp = requests.get(server.url + "/jobs/" + job_id, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_until(server, job_id, statuses, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = job_of(server, job_id)
        if job["status"] in statuses:
            return job
        time.sleep(0.05)
    raise AssertionError("job %s never became %s: %s" % (job_id, statuses, job))


def assert_refused_for_the_store(resp, db_path):
    assert resp.status_code == 503, resp.text
    answer = resp.json()
    assert answer["field"] == "state_dir"
    assert db_path in answer["error"] and any(reason in answer["error"] for reason in FULL), answer
    assert int(resp.headers["Retry-After"]) > 0


def test_a_full_state_dir_refuses_new_jobs_and_lets_running_ones_finish(clean, start_server, proxy, tmp_path):
    with small_filesystem(tmp_path / "small") as small, contextlib.ExitStack() as servers:
        def start(*args):  # stopped before the filesystem is unmounted, whatever happens
            started = start_server(*args)
            servers.callback(started.stop)
            return started

        state_dir = small / "state"
        db_path = str(state_dir / "puller.db")
        # Manifests held 3 s: the jobs below are mid-pull when the disk fills.
        proxy.reset_stats(Rules(delay=3.0))
        server = start("--state-dir", str(state_dir), "--max-jobs", "2")
        job_images = [clean.image(n, registry=proxy.address) for n in range(1, 11)]
        pull_images = [clean.image(n, registry=proxy.address) for n in range(11, 21)]
        resp = create(server, {"images": job_images, "concurrency": 10})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        pulled = server.pull_later({"images": pull_images, "concurrency": 10})
        wait_until(server, job_id, ("running",))
        end = time.monotonic() + 20
        while not [j for j in requests.get(server.url + "/jobs", timeout=10).json()["jobs"]
                   if j["kind"] == "pull" and j["status"] == "running"]:
            assert time.monotonic() < end, "the /pull never started"
            time.sleep(0.05)

        filler = fill(small)
        # More refusals than --max-jobs: a refused job must not keep a slot.
        for _attempt in range(3):
            assert_refused_for_the_store(create(server, {"images": [clean.image(21)]}), db_path)
        refused_pull = server.pull({"images": [clean.image(22)]})
        assert_refused_for_the_store(refused_pull, db_path)

        job = wait_until(server, job_id, ("succeeded", "failed", "cancelled"))
        assert job["status"] == "succeeded", job
        assert job["succeeded"] == 10 and job["failed"] == 0 and job["progress"] == 100
        assert len(job["report"]["success"]) == 10 and not job["report"]["failure"]
        answer = pulled.result(timeout=120)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["success"]) == 10 and not answer.json()["failure"]
        held = {tag for image in clean.client().images() for tag in image.get("RepoTags") or []}
        assert {image + ":latest" for image in job_images + pull_images} <= held
        listed = {j["id"]: j for j in requests.get(server.url + "/jobs", timeout=10).json()["jobs"]}
        assert listed[job_id]["status"] == "succeeded" and listed[job_id]["succeeded"] == 10
        pull_id = next(j for j in listed.values() if j["kind"] == "pull")["id"]

        # The space is back: new jobs are accepted, up to --max-jobs again.
        os.remove(filler)
        proxy.reset_stats(Rules(delay=1.0))
        clean.remove_all_images()
        more = [create(server, {"images": [clean.image(n, registry=proxy.address)]}) for n in (21, 22)]
        assert [r.status_code for r in more] == [202, 202], [r.text for r in more]
        assert create(server, {"images": [clean.image(23)]}).status_code == 429
        for resp in more:
            assert wait_until(server, resp.json()["id"], ("succeeded", "failed"))["status"] == "succeeded"

        server.stop()
        log = server.log()
        assert "Traceback" not in log, log
        for kept in (job_id, pull_id):  # one line per job, not one per refused write
            assert len([line for line in log.splitlines() if kept in line and "cannot be written" in line]) == 1, log

        # What the store refused while it was full was written once it took writes again.
        again = start("--state-dir", str(state_dir), "--max-jobs", "2")
        for kept, kind in ((job_id, "job"), (pull_id, "pull")):
            stored = job_of(again, kept)
            assert (stored["status"], stored["kind"], stored["succeeded"], stored["resumed"]) == (
                "succeeded", kind, 10, 0), stored
            assert all(image["phase"] == "succeeded" and image["row"]["status"] == "pulled"
                       for image in stored["images"])
        listed = {j["id"]: j for j in requests.get(again.url + "/jobs", timeout=10).json()["jobs"]}
        assert (listed[job_id]["status"], listed[job_id]["succeeded"], listed[job_id]["desired"]) == (
            "succeeded", 10, 10)
        again.stop()
        assert "Traceback" not in again.log()
