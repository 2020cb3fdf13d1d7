"""Prometheus metrics for ``/metrics``, fed by the engine's events."""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from puller.core._godur import parse_duration

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """One registry per server (no global state), updated from engine events and reports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, in_flight, job_counts=None):
        self.registry = CollectorRegistry()
        self.requests = Counter("puller_pull_requests", "POST /pull requests by HTTP status.", ["code"],
                                registry=self.registry)
        self.attempts = Counter("puller_pull_attempts", "Pull attempts sent to the Docker daemon.",
                                registry=self.registry)
        self.retries = Counter("puller_pull_retries", "Attempts that failed and were retried.",
                               registry=self.registry)
        self.images = Counter("puller_images", "Requested images by result status.", ["status"],
                              registry=self.registry)
        self.duration = Histogram("puller_image_pull_seconds", "Time per requested image, retries included.",
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        Gauge("puller_pulls_in_flight", "Daemon pulls running now.", registry=self.registry).set_function(
            lambda: len(in_flight()))
        self.sources = Counter("puller_pulls_by_source", "Images pulled, by the endpoint that served them "
                               "(a mirror or the origin).", ["source"], registry=self.registry)
        self.fallbacks = Counter("puller_mirror_fallbacks", "Mirrors skipped for an image (they failed or could not "
                                 "be trusted), by mirror.", ["mirror"], registry=self.registry)
        self.job_seconds = Histogram("puller_job_seconds", "Time from a job's creation to its end.",
                                     buckets=DURATION_BUCKETS + (3600, 7200), registry=self.registry)
        self._job_counts = job_counts
        if job_counts is not None:
            self.registry.register(_JobCounts(job_counts))

    def on_event(self, event):
        if event.kind == "attempt":
            self.attempts.inc()
        elif event.kind == "retry":
            self.retries.inc()

    def observe(self, status_code, report=None):
        self.requests.labels(code=str(status_code)).inc()
        for row in (report["success"] + report["failure"]) if report is not None else ():
            self.images.labels(status=row["status"]).inc()
            self.duration.observe(parse_duration(row["cost"]))
        self.rows(report)

    def rows(self, report):
        """Where each image came from, and which mirrors were passed over."""
        for row in (report["success"] + report["failure"]) if report is not None else ():
            if row.get("source"):
                self.sources.labels(source=row["source"]).inc()
            for skipped in row.get("mirrors") or ():
                self.fallbacks.labels(mirror=skipped["mirror"]).inc()

    def job_ended(self, status, seconds, report=None):
        self.job_seconds.observe(seconds)
        self.rows(report)

    def render(self):
        return generate_latest(self.registry)


class _JobCounts:
    """``puller_jobs{status}``: jobs in the store by status, read at scrape time."""

    def __init__(self, counts):
        self._counts = counts

    def collect(self):
        family = GaugeMetricFamily("puller_jobs", "Jobs in the store by status.", labels=["status"])
        for status, count in sorted(self._counts().items()):
            family.add_metric([status], count)
        yield family
