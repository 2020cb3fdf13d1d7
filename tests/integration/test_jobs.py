"""Pull jobs against the real daemon: watch, cancel, resume, store, stalls."""

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import free_port, report
from faultproxy import Rules

BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]+$")


def create(server, body, **kwargs):
    resp = requests.post(server.url + "/jobs", json=body, timeout=10, **kwargs)
    server.bodies.append(resp.text)
    return resp


def get(server, job_id):
    resp = requests.get(server.url + "/jobs/" + job_id, timeout=10)
    server.bodies.append(resp.text)
    return resp


def wait_ended(server, job_id, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = get(server, job_id).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError("job %s did not end: %s" % (job_id, job))


def ndjson(server, job_id, sink, sse=False):
    """Read a job's event stream into ``sink`` until it ends (in the caller's thread)."""
    headers = {"Accept": "text/event-stream"} if sse else {}
    with requests.get(server.url + "/jobs/%s/events" % job_id, headers=headers, stream=True, timeout=120) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream" if sse else "application/x-ndjson")
        if not sse:
            for line in resp.iter_lines():
                if line:
                    sink.append(json.loads(line))
            return
        event_type = None
        for line in resp.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event_type = line[len("event: "):]
            elif line.startswith("data: "):
                event = json.loads(line[len("data: "):])
                assert event["type"] == event_type
                sink.append(event)


def _comparable(rows):
    return [{k: v for k, v in row.items() if k not in ("cost", "previous_id")} for row in rows]


def test_a_job_of_20_images_progresses_to_100_and_reports_as_pull_would(clean, server):
    images = [clean.image(n) for n in range(1, 21)]
    resp = create(server, {"images": images, "concurrency": 5})
    assert resp.status_code == 202 and resp.json()["status"] == "queued"
    job_id = resp.json()["id"]
    assert resp.headers["Location"] == "/jobs/" + job_id
    streamed, sse = [], []
    readers = [threading.Thread(target=ndjson, args=(server, job_id, streamed)),
               threading.Thread(target=ndjson, args=(server, job_id, sse, True))]
    for reader in readers:
        reader.start()
    job = wait_ended(server, job_id)
    for reader in readers:
        reader.join(30)
    assert job["status"] == "succeeded" and job["progress"] == 100
    assert (job["desired"], job["succeeded"], job["failed"], job["active"]) == (20, 20, 0, 0)
    assert all(image["phase"] == "succeeded" and image["row"]["status"] == "pulled" for image in job["images"])
    for events in (streamed, sse):
        assert events[0]["type"] == "state" and events[-1]["type"] == "report" and events[-1]["ok"] is True
        progress = [e["job_progress"] for e in events if "job_progress" in e]
        assert progress == sorted(progress), "progress went down"
        assert {"attempt", "done"} <= {e["type"] for e in events}
    assert get(server, job_id).json()["progress"] == 100
    clean.remove_all_images()
    direct = server.pull({"images": images, "concurrency": 5}).json()
    assert _comparable(job["report"]["success"]) == _comparable(direct["success"])
    assert job["report"]["failure"] == direct["failure"] == []
    # A late subscriber gets the state first, then the report.
    late = []
    ndjson(server, job_id, late)
    assert [e["type"] for e in late] == ["state", "report"] and late[0]["job"]["status"] == "succeeded"


def test_pull_streams_ndjson_when_asked_and_is_unchanged_otherwise(clean, server):
    body = {"images": [clean.image(1), clean.image(99)], "retry": 1}
    with requests.post(server.url + "/pull", json=body, headers={"Accept": "application/x-ndjson"},
                       stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    last = lines[-1]
    assert last["type"] == "report" and last["ok"] is False
    assert len(last["success"]) == 1 and len(last["failure"]) == 1
    plain = server.pull(body)
    assert plain.status_code == 500 and set(plain.json()) == {"success", "failure", "startAt", "cost"}


def test_delete_mid_job_cancels_within_a_second(clean, server, proxy):
    proxy.reset_stats(Rules(delay=30))
    slow = [clean.image(n, registry=proxy.address) for n in (16, 17, 18)]
    job_id = create(server, {"images": slow, "concurrency": 2}).json()["id"]
    time.sleep(1.5)
    t0 = time.monotonic()
    resp = requests.delete(server.url + "/jobs/" + job_id, timeout=30)
    took = time.monotonic() - t0
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "cancelled" and took < 1.5, (took, job)
    assert [image["phase"] for image in job["images"]] == ["cancelled"] * 3
    assert all(row["status"] == "cancelled" for row in job["report"]["failure"])
    assert requests.delete(server.url + "/jobs/" + job_id, timeout=10).status_code == 409
    client = clean.client()
    assert not any(client.images(name=image) for image in slow), "a half-pulled tag was left"
    proxy.reset_stats(Rules())
    again = wait_ended(server, create(server, {"images": slow[:1]}).json()["id"])
    assert again["status"] == "succeeded"
    report(clean, "DELETE of a job with 2 attempts in flight on a hung registry: answered in %.2fs" % took)


def test_bad_job_requests(server, start_server):
    assert get(server, "nope").status_code == 404 and get(server, "nope").json()["field"] == "id"
    assert requests.delete(server.url + "/jobs/nope").status_code == 404
    resp = create(server, {"images": []})
    assert resp.status_code == 400 and resp.json()["field"] == "images"
    resp = requests.get(server.url + "/jobs?status=sleeping")
    assert resp.status_code == 400 and resp.json()["field"] == "status"
    assert requests.get(server.url + "/jobs?limit=0").json()["field"] == "limit"
    assert requests.get(server.url + "/jobs/nope/events").status_code == 404


def test_more_than_max_jobs_is_429(clean, start_server, proxy):
    proxy.reset_stats(Rules(delay=30))
    server = start_server("--max-jobs", "2")
    ids = [create(server, {"images": [clean.image(n, registry=proxy.address)]}).json()["id"] for n in (19, 20)]
    resp = create(server, {"images": [clean.image(21, registry=proxy.address)]})
    assert resp.status_code == 429 and resp.headers["Retry-After"] and resp.json()["error"]
    for job_id in ids:
        requests.delete(server.url + "/jobs/" + job_id, timeout=30)


def test_a_client_that_disconnects_from_pull_still_gets_its_images_pulled(clean, server, proxy):
    proxy.reset_stats(Rules(delay=1.0))
    images = [clean.image(n, registry=proxy.address) for n in (1, 2, 3)]
    for streaming in (False, True):
        headers = {"Accept": "application/x-ndjson"} if streaming else {}
        with pytest.raises((requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError)):
            requests.post(server.url + "/pull", json={"images": images, "concurrency": 3}, headers=headers,
                          timeout=0.5).content
        time.sleep(0.2)
        (job,) = requests.get(server.url + "/jobs?limit=1").json()["jobs"]
        assert job["kind"] == "pull"
        ended = wait_ended(server, job["id"])
        assert ended["status"] == "succeeded" and ended["succeeded"] == 3
        clean.remove_all_images()


def _kill_and_restart(start_server, server, sig, *extra):
    server.proc.send_signal(sig)
    server.proc.wait(60)
    return start_server("--state-dir", str(server.state_dir), *extra)


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
def test_a_job_resumes_after_the_server_dies(clean, start_server, proxy, how):
    proxy.reset_stats(Rules(delay=4.0))
    fast = [clean.image(n) for n in (1, 2, 3, 4)]
    slow = [clean.image(n, registry=proxy.address) for n in (5, 6, 7, 8)]
    server = start_server("--drain-timeout", "1s")
    job_id = create(server, {"images": fast + slow, "concurrency": 8}).json()["id"]
    for _i in range(100):
        if get(server, job_id).json()["succeeded"] == 4:
            break
        time.sleep(0.1)
    before = get(server, job_id).json()
    done_before = [i["image"] for i in before["images"] if i["phase"] == "succeeded"]
    assert len(done_before) == 4
    proxy.reset_stats(Rules())
    again = _kill_and_restart(start_server, server, signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    job = wait_ended(again, job_id)
    assert job["status"] == "succeeded" and job["resumed"] == 1, job
    assert [i["row"]["status"] for i in job["images"]] == ["pulled"] * 8
    kept = {i["image"]: i["row"]["digest"] for i in before["images"] if i["phase"] == "succeeded"}
    assert {i["image"]: i["row"]["digest"] for i in job["images"] if i["image"] in kept} == kept
    assert "resumed 1 job(s)" in again.log()
    report(clean, "resume after %s: %d images done before, %d pulled after the restart, job succeeded"
           % (how, len(done_before), 8 - len(done_before)))


def test_no_resume_leaves_the_job_interrupted(clean, start_server, proxy):
    proxy.reset_stats(Rules(delay=30))
    server = start_server()
    job_id = create(server, {"images": [clean.image(1), clean.image(9, registry=proxy.address)],
                             "concurrency": 2}).json()["id"]
    for _i in range(100):
        if get(server, job_id).json()["succeeded"] == 1:
            break
        time.sleep(0.1)
    again = _kill_and_restart(start_server, server, signal.SIGKILL, "--no-resume")
    job = get(again, job_id).json()
    assert job["status"] == "interrupted"
    assert [i["phase"] for i in job["images"]] == ["succeeded", "cancelled"]
    assert len(job["report"]["success"]) == 1 and "interrupted" in job["report"]["failure"][0]["errmsg"]


def test_a_stalled_blob_download_is_aborted_and_retried(clean, start_server, proxy):
    proxy.reset_stats(Rules(pattern=BLOB_PATH, hang_body_first=3, hang=25))
    server = start_server("--stall-timeout", "2s")
    t0 = time.monotonic()
    resp = server.pull({"images": [clean.image(10, registry=proxy.address)], "retry": 3})
    took = time.monotonic() - t0
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"][0]["retried"] >= 2
    assert "stalled: the Docker daemon sent nothing for 2s" in server.log()
    assert took < 20, took
    report(clean, "blob download stalled mid-body: attempt aborted after the 2s stall timeout, pulled in %.1fs"
           % took)


def test_ended_jobs_are_deleted_after_the_retention(clean, start_server):
    server = start_server("--job-retention", "1s")
    ids = [create(server, {"images": [clean.image(1)], "dry_run": True}).json()["id"] for _i in range(5)]
    for job_id in ids:
        wait_ended(server, job_id)
    time.sleep(3.0)
    assert all(get(server, job_id).status_code == 404 for job_id in ids)
    db = sqlite3.connect(str(server.state_dir / "puller.db"))
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0


def _serve(args, timeout=20):
    return subprocess.run([sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % free_port()] + args,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_a_state_dir_that_cannot_be_used_stops_the_start(tmp_path, start_server):
    unwritable = tmp_path / "ro"
    unwritable.mkdir()
    (unwritable / "state").mkdir()
    subprocess.run(["chattr", "+i", str(unwritable / "state")], check=True)
    try:
        result = _serve(["--state-dir", str(unwritable / "state")])
    finally:
        subprocess.run(["chattr", "-i", str(unwritable / "state")], check=True)
    assert result.returncode == 2 and str(unwritable / "state") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "puller.db").write_bytes(b"this is not a database" * 100)
    result = _serve(["--state-dir", str(corrupt)])
    assert result.returncode == 2 and "puller.db" in result.stderr and "Traceback" not in result.stderr
    holder = start_server()
    result = _serve(["--state-dir", str(holder.state_dir)])
    assert result.returncode == 2 and "another puller process holds it" in result.stderr


def test_job_metrics(clean, server):
    wait_ended(server, create(server, {"images": [clean.image(1)], "dry_run": True}).json()["id"])
    text = requests.get(server.url + "/metrics").text
    assert 'puller_jobs{status="succeeded"}' in text and "puller_job_seconds_count" in text
