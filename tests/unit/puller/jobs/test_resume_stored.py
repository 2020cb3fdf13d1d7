"""What a start makes of the jobs a stopped process left in the store.

A real store in a temporary dir; no engine and no daemon: none of these jobs
has anything left that the server may pull.
"""

import functools
import json
import sqlite3

import pytest

from puller.core._request import parse_pull_request
from puller.jobs.manager import JobManager
from puller.jobs.store import DB_NAME, JobStore


def _row(image, status, errmsg=""):
    return {"image": image, "tag": "latest", "project": "", "cost": "1s", "retried": 1, "errmsg": errmsg,
            "digest": "", "id": "", "previous_id": "", "status": status}


@pytest.fixture
def state(tmp_path):
    return str(tmp_path / "state")


def _store_job(state, job_id, request, ended=(), status="running"):
    """A job as a killed server leaves it: ``ended`` = [(index, phase, row), ...] written, its end not."""
    store = JobStore(state)
    store.insert({"id": job_id, "kind": "job", "status": "queued", "created": "2026-01-01T00:00:00Z",
                  "created_ts": 1.0}, request, [(i, "waiting") for i in range(len(request["images"]))])
    store.finish_entries(job_id, [(i, phase, 1, row) for i, phase, row in ended])
    store.update_job(job_id, status=status, started="2026-01-01T00:00:01Z")
    store.close()


def _start(state, enabled=True, **settings):
    """The start of a server with these settings; its store once the resumed jobs have ended."""
    jobs = JobManager(None, JobStore(state), None, max_jobs=4, retention=3600, max_images=100)
    jobs.parse = functools.partial(parse_pull_request, **settings)  # as the server's parse, with its settings
    resumed = jobs.resume(enabled=enabled)
    for job_id in resumed:
        jobs.wait(job_id, 10)
    return resumed, jobs.store


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("last", ["pulled", "failed"])
def test_a_job_with_every_image_ended_ends_with_its_report(state, enabled, last):
    a, b = "reg.example.com/a", "reg.example.com/b"
    _store_job(state, "j1", {"images": [a, b]},
               [(0, "succeeded", _row(a, "pulled")), (1, "succeeded" if last == "pulled" else "failed", _row(b, last))])
    resumed, store = _start(state, enabled)
    job, entries = store.get("j1")
    assert resumed == (["j1"] if enabled else [])
    assert job["status"] == ("succeeded" if last == "pulled" else "failed") and job["error"] is None, job
    assert job["resumed"] == (1 if enabled else 0) and job["finished"]
    rows = job["report"]["success"] + job["report"]["failure"]
    assert sorted(r["status"] for r in rows) == sorted(["pulled", last])
    assert [e["row"]["status"] for e in entries] == ["pulled", last]


def test_a_job_the_registry_allow_list_now_refuses_ends_failed_naming_the_setting(state, caplog):
    images = ["reg.example.com/done", "reg.example.com/kept", "other.example.com/refused"]
    _store_job(state, "j2", {"images": images}, [(0, "succeeded", _row(images[0], "pulled"))])
    _store_job(state, "j3", {"images": ["reg.example.com/left"]}, [(0, "failed", _row("x", "failed"))])
    resumed, store = _start(state, allowed_registries=("reg.example.com",))
    assert resumed == ["j3"]  # the other stored job resumes (here with nothing left)
    job, entries = store.get("j2")
    assert job["status"] == "failed" and job["resumed"] == 0
    assert [e["row"]["status"] for e in entries] == ["pulled", "failed", "failed"]
    refused = "not resumed: --allow-registry no longer admits registry other.example.com"
    assert entries[2]["row"]["errmsg"] == refused
    assert entries[1]["row"]["errmsg"] == refused + " (images[2] of this job)"
    assert [r["image"] for r in job["report"]["failure"]] == images[1:]
    assert [r.getMessage() for r in caplog.records if "j2" in r.getMessage()] == [
        "job j2 not resumed, it ends failed: " + refused]


def test_a_job_with_request_mirrors_needs_allow_request_mirrors(state):
    _store_job(state, "j4", {"images": ["docker.io/library/busybox"], "mirrors": {"docker.io": ["m.example.com"]}})
    resumed, store = _start(state)
    job, (entry,) = store.get("j4")
    assert resumed == [] and job["status"] == "failed"
    assert entry["row"]["errmsg"] == ("not resumed: request mirrors need --allow-request-mirrors "
                                      "(m.example.com for docker.io)")


def test_a_stored_request_that_no_longer_parses_ends_failed(state):
    _store_job(state, "j5", {"images": [{"image": "reg.example.com/a", "platform": "arm64"}]})
    resumed, store = _start(state)
    job, (entry,) = store.get("j5")
    assert resumed == [] and job["status"] == "failed"
    assert entry["row"]["errmsg"].startswith("not resumed: images[0].platform: must be OS/ARCH")


def test_a_stored_job_that_cannot_be_read_back_ends_failed_and_the_start_goes_on(state):
    _store_job(state, "j6", {"images": ["reg.example.com/a"]})
    _store_job(state, "j7", {"images": ["reg.example.com/b"]}, [(0, "succeeded", _row("reg.example.com/b", "pulled"))])
    db = sqlite3.connect(str(state) + "/" + DB_NAME)
    with db:  # an entry beyond the request's images
        db.execute("UPDATE jobs SET request = ? WHERE id = 'j6'", (json.dumps({"images": []}),))
    db.close()
    resumed, store = _start(state)
    assert resumed == ["j7"] and store.get("j7")[0]["status"] == "succeeded"
    job, _entries = store.get("j6")
    assert job["status"] == "failed" and job["error"] == "internal error: cannot be resumed"


def test_a_request_mirror_the_allow_list_now_refuses_names_the_allow_list(state):
    _store_job(state, "j8", {"images": ["reg.example.com/a"], "mirrors": {"reg.example.com": ["m.example.com"]}})
    resumed, store = _start(state, allow_request_mirrors=True, allowed_registries=("reg.example.com",))
    job, (entry,) = store.get("j8")
    assert resumed == [] and job["status"] == "failed"
    assert entry["row"]["errmsg"].startswith("not resumed: --allow-registry no longer admits the request's mirrors: "
                                             "mirror m.example.com (for reg.example.com) is not allowed here")
