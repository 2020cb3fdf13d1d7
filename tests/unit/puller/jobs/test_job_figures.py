"""What ``/metrics`` shows of a job is what the job API shows: its entries' bytes and progress, summed as they move."""

from puller.core._engine import PullEvent
from puller.jobs import model


def new_job(n, kind="job", job_id="j"):
    job = model.Job(job_id, kind, [model.Entry(i, "img-%d" % i, "latest", "") for i in range(n)], {"images": []})
    job.map_references(("img-%d:latest" % i, i) for i in range(n))
    return job


def layer(image, name, current, total, phase="Downloading"):
    return PullEvent("progress", image, 1, {"layer": name, "phase": phase, "current": current, "total": total})


def complete(image, name):
    return PullEvent("layer", image, 1, {"layer": name, "phase": "Pull complete", "current": None, "total": None,
                                         "done": True})


def assert_figures_equal_the_api(job):
    shown, api = job.figures(), job.as_dict()
    images = api["images"]
    assert shown["bytes_done"] == sum(i["bytes_done"] for i in images)
    assert shown["bytes_total"] == sum(i["bytes_total"] for i in images)
    assert abs(shown["images_progress"] - sum(e.progress for e in job.entries) / 100.0) < 1e-6
    assert shown["done"] == api["succeeded"] + api["failed"] + api["cancelled"]
    assert {k: shown[k] for k in ("desired", "failed")} == {k: api[k] for k in ("desired", "failed")}


def test_a_jobs_bytes_and_progress_are_its_images_summed_at_every_step():
    job = new_job(3)
    assert job.figures() == {"desired": 3, "active": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "done": 0,
                             "bytes_done": 0, "bytes_total": 0, "images_progress": 0.0}
    steps = [PullEvent("attempt", "img-0:latest", 1, None), layer("img-0:latest", "a", 30, 100),
             layer("img-0:latest", "b", 0, 400), layer("img-1:latest", "c", 50, 50),
             layer("img-0:latest", "a", 100, 100), layer("img-0:latest", "a", 40, 100, "Extracting"),
             complete("img-0:latest", "a"), layer("img-0:latest", "b", 400, 400), complete("img-0:latest", "b"),
             # a retry starts a layer again from fewer bytes: the figures follow it down, as the API's do
             PullEvent("retry", "img-1:latest", 1, {"error": "boom", "delay": 0.1}), layer("img-1:latest", "c", 10, 50)]
    for event in steps:
        job.apply(event)
        assert_figures_equal_the_api(job)
    assert (job.figures()["bytes_done"], job.figures()["bytes_total"]) == (510, 550)
    job.end_entry(0, model.SUCCEEDED, 1, {"status": "pulled"})
    job.end_entry(2, model.FAILED, 1, {"status": "failed"})
    assert_figures_equal_the_api(job)
    assert job.figures()["done"] == 2 and job.figures()["failed"] == 1


def test_every_image_ended_is_exactly_one_image_each():
    job = new_job(7)
    for i in range(7):  # progress in fractions that do not add up exactly in binary
        job.apply(layer("img-%d:latest" % i, "a", 1, 3))
        job.apply(layer("img-%d:latest" % i, "b", 2, 7))
    for i in range(7):
        job.end_entry(i, model.SUCCEEDED, 1, {"status": "pulled"})
    assert job.figures()["images_progress"] == 7.0 and job.figures()["done"] == 7
