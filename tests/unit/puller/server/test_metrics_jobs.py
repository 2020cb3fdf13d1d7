"""``puller_job_*``: a job's gauges while it runs and, with its final figures, until a newer job of its kind;
``puller_pulled_bytes_total``: its images' bytes by source, with labels bounded by the configuration."""

from prometheus_client.parser import text_string_to_metric_families

from puller.core._engine import Done, PullEvent
from puller.jobs import model
from puller.server.metrics import JOB_GAUGES, KEEP_ENDED, Metrics

CONFIGURED = {"reg.example.com": ("cache.example.com:5000",)}


def new_job(job_id, n=2, kind="job", registry="reg.example.com"):
    entries = [model.Entry(i, "%s/img-%d" % (registry, i), "latest", "") for i in range(n)]
    job = model.Job(job_id, kind, entries, {"images": []})
    job.map_references(("%s/img-%d:latest" % (registry, i), i) for i in range(n))
    return job


def download(job, i, current, total, layer="a"):
    reference = "%s:latest" % job.entries[i].image
    job.apply(PullEvent("progress", reference, 1, {"layer": layer, "phase": "Downloading", "current": current,
                                                   "total": total}))


def end(metrics, job, status=model.SUCCEEDED):
    for entry in job.entries:
        if not entry.ended:
            job.end_entry(entry.index, model.SUCCEEDED, 1, {"status": "pulled"})
    job.status = status
    metrics.job_ended(status, 1.0, None, job=job)


def samples(metrics):
    """``{(sample name, frozenset of labels): value}`` of the rendered text, as Prometheus parses it."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def job_series(metrics, name="puller_job_images_desired"):
    return {dict(labels)["job_id"]: value for (sample, labels), value in samples(metrics).items() if sample == name}


def test_a_running_job_shows_what_the_job_api_shows():
    metrics = Metrics(lambda: [])
    assert job_series(metrics) == {}
    job = new_job("a1", n=3)
    metrics.job_queued(job)
    download(job, 0, 30, 100)
    download(job, 1, 50, 50)
    job.end_entry(2, model.FAILED, 1, {"status": "failed"})
    shown = {name: value for (name, labels), value in samples(metrics).items()
             if labels == frozenset({("job_id", "a1"), ("kind", "job")})}
    figures = job.figures()
    assert shown == {name: figures[key] for name, _help, key in JOB_GAUGES}
    assert shown["puller_job_bytes_done"] == 80 and shown["puller_job_bytes_total"] == 150
    assert shown["puller_job_images_done"] == 1 and shown["puller_job_images_failed"] == 1
    download(job, 0, 100, 100)  # read at scrape time: the next scrape has the new figure
    assert job_series(metrics, "puller_job_bytes_done") == {"a1": 150}
    assert "img-" not in metrics.render().decode()  # no image names in labels


def test_an_ended_job_keeps_its_final_figures_until_a_newer_job_of_its_kind():
    metrics = Metrics(lambda: [])
    first, pull = new_job("first"), new_job("pull1", kind="pull")
    metrics.job_queued(first)
    metrics.job_queued(pull)
    download(first, 0, 10, 10)
    end(metrics, first)
    end(metrics, pull)
    assert job_series(metrics) == {"first": 2, "pull1": 2}
    assert job_series(metrics, "puller_job_images_progress") == {"first": 2.0, "pull1": 2.0}  # 2 images each
    first.entries[0].layer({"layer": "late", "phase": "Downloading", "current": 1, "total": 9})
    assert job_series(metrics, "puller_job_bytes_done") == {"first": 10, "pull1": 0}  # final: taken at its end
    metrics.job_queued(new_job("second"))
    assert job_series(metrics) == {"second": 2, "pull1": 2}  # a job's next one takes its place; not a pull's


def test_jobs_ending_together_keep_at_most_the_latest_ones():
    metrics = Metrics(lambda: [])
    jobs = [new_job("j%02d" % n, n=1) for n in range(KEEP_ENDED + 5)]
    for job in jobs:
        metrics.job_queued(job)
    assert len(job_series(metrics)) == KEEP_ENDED + 5  # running: every one
    for job in jobs:
        end(metrics, job)
    assert sorted(job_series(metrics)) == [job.id for job in jobs[5:]]


def test_a_job_whose_end_went_unheard_is_kept_as_ended():
    metrics = Metrics(lambda: [])
    job = new_job("lost", n=1)
    metrics.job_queued(job)
    job.end_entry(0, model.FAILED, 1, {"status": "failed"})
    job.status = model.FAILED  # ended without job_ended
    assert job_series(metrics, "puller_job_images_failed") == {"lost": 1}
    metrics.job_queued(new_job("next", n=1))
    assert job_series(metrics) == {"next": 1}


def _ended_image(metrics, job, i, current, source=None):
    download(job, i, current, current)
    done = Done("pulled", 1, None, "sha256:x", {"source": source} if source else {}, 1.0)
    metrics.image_ended("%s:latest" % job.entries[i].image, done, job.entries[i])


def pulled(metrics):
    return {tuple(sorted(labels)): value for (name, labels), value in samples(metrics).items()
            if name == "puller_pulled_bytes_total"}


def test_pulled_bytes_tell_mirrors_from_origins():
    metrics = Metrics(lambda: [], mirrors=CONFIGURED)
    configured, other = new_job("c", n=4), new_job("o", n=3, registry="other.example.org")
    _ended_image(metrics, configured, 0, 100, source="cache.example.com:5000")  # the operator's mirror
    _ended_image(metrics, configured, 1, 20, source="reg.example.com")  # its registry, after the mirror failed
    _ended_image(metrics, configured, 2, 0, source="cache.example.com:5000")  # present: nothing downloaded
    _ended_image(metrics, other, 0, 7)  # no mirrors: its registry served it
    _ended_image(metrics, other, 1, 5, source="m1.example.net")  # a mirror the request named
    assert pulled(metrics) == {
        (("source", "cache.example.com:5000"), ("via", "mirror")): 100,
        (("source", "reg.example.com"), ("via", "origin")): 20,
        (("source", "origin"), ("via", "origin")): 7,
        (("source", "request"), ("via", "mirror")): 5}


def test_a_thousand_request_mirrors_and_registries_add_no_series():
    metrics = Metrics(lambda: [], mirrors=CONFIGURED)
    for n in range(1000):
        job = new_job("r%d" % n, n=1, registry="other%d.example.org" % n)
        _ended_image(metrics, job, 0, 1, source="m%d.example.net" % n if n % 2 else None)
    assert pulled(metrics) == {(("source", "request"), ("via", "mirror")): 500,
                               (("source", "origin"), ("via", "origin")): 500}
