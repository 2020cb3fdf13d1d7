"""A job's counts and progress are kept as its entries move, and always equal a recount."""

from puller.core._engine import PullEvent
from puller.jobs import model


def recount(job):
    """What the counts and the progress were before they were kept: a pass over every entry."""
    phases = [e.phase for e in job.entries]
    counts = {"desired": len(phases), "active": phases.count(model.PULLING) + phases.count(model.RETRYING),
              "succeeded": phases.count(model.SUCCEEDED), "failed": phases.count(model.FAILED),
              "cancelled": phases.count(model.CANCELLED)}
    return counts, sum(e.progress for e in job.entries) / len(job.entries)


def new_job(n):
    job = model.Job("j", "job", [model.Entry(i, "img-%d" % i, "latest", "") for i in range(n)], {"images": []})
    job.map_references(("img-%d:latest" % i, i) for i in range(n))
    return job


def layer(image, name, current, total, phase="Downloading"):
    return PullEvent("progress", image, 1, {"layer": name, "phase": phase, "current": current, "total": total})


def assert_kept(job):
    counts, progress = recount(job)
    assert job.counts() == counts
    assert abs(job._progress_sum / len(job.entries) - progress) < 1e-9  # pylint: disable=protected-access
    for entry in job.entries:
        layers = entry._layers.values()  # pylint: disable=protected-access
        assert (entry.bytes_done, entry.bytes_total) == (sum(d for d, _t, _f in layers), sum(t for _d, t, _f in layers))


def test_events_keep_counts_and_progress_equal_to_a_recount():
    job = new_job(4)
    assert_kept(job)
    job.apply(PullEvent("attempt", "img-0:latest", 1, None))
    job.apply(PullEvent("attempt", "img-1:latest", 1, None))
    job.apply(layer("img-0:latest", "a", 50, 100))
    job.apply(layer("img-0:latest", "b", 10, 400))
    job.apply(layer("img-0:latest", "a", 100, 100, "Extracting"))
    job.apply(PullEvent("retry", "img-1:latest", 1, {"error": "boom", "delay": 0.5}))
    assert_kept(job)
    assert job.counts()["active"] == 2
    assert job.entries[0].bytes_done == 60 and job.entries[0].bytes_total == 500  # extracting moves no bytes
    job.end_entry(0, model.SUCCEEDED, 1, {"status": "pulled"})
    job.end_entry(1, model.FAILED, 3, {"status": "failed"})
    assert_kept(job)
    assert job.counts() == {"desired": 4, "active": 0, "succeeded": 1, "failed": 1, "cancelled": 0}
    assert job.progress == 50.0
    job.entries[0].phase = model.FAILED  # set directly, as the end of a run and a resume do
    job.entries[2].phase = job.entries[3].phase = model.CANCELLED
    assert_kept(job)
    job.status = model.FAILED
    assert job.progress == 100.0


def test_progress_never_goes_down_when_a_layer_appears_late():
    job = new_job(1)
    job.apply(PullEvent("attempt", "img-0:latest", 1, None))
    job.apply(layer("img-0:latest", "a", 90, 100))
    before = job.progress
    job.apply(layer("img-0:latest", "b", 0, 100))
    assert job.progress == before and job.entries[0].progress == before
    assert_kept(job)


def test_a_listed_job_has_its_stored_counts_and_no_entries():
    row = {"id": "j", "kind": "pull", "status": "running", "created": "2024-01-01T00:00:00Z", "created_ts": 1.0,
           "started": None, "finished": None, "error": None, "resumed": 0,
           "phases": {"waiting": 6, "succeeded": 3, "failed": 1}}
    job = model.Job.from_store(row, None)
    assert job.entries == []
    listed = job.as_dict(images=False)
    assert {k: listed[k] for k in ("desired", "active", "succeeded", "failed", "cancelled")} == {
        "desired": 10, "active": 0, "succeeded": 3, "failed": 1, "cancelled": 0}
    assert listed["progress"] == 40.0 and "images" not in listed


def test_a_stored_job_with_its_entries_counts_them():
    row = {"id": "j", "kind": "job", "status": "succeeded", "created": "2024-01-01T00:00:00Z", "created_ts": 1.0,
           "started": None, "finished": None, "report": None, "error": None, "resumed": 0,
           "request": {"images": ["a", "b"]}}
    entries = [{"idx": 0, "phase": model.SUCCEEDED, "attempts": 1, "row": {"tag": "1"}},
               {"idx": 1, "phase": model.SUCCEEDED, "attempts": 1, "row": None}]
    job = model.Job.from_store(row, entries)
    assert job.counts()["succeeded"] == 2 and job.progress == 100.0
    assert_kept(job)
