"""Prometheus metrics for ``/metrics``, fed by the engine's events.

Label values are bounded by what the operator configured, never by what
callers send: a mirror or registry a request named would otherwise add a
series per host, without end.
"""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from puller.core._godur import parse_duration
from puller.core._reference import InvalidReference, parse_reference

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """One registry per server (no global state), updated from engine events and reports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, in_flight, job_counts=None, mirrors=None):
        self.registry = CollectorRegistry()
        self._labels = EndpointLabels(mirrors or {})
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
        self.sources = Counter("puller_pulls_by_source", "Images pulled, by the endpoint that served them: a "
                               "configured mirror or registry by host, else \"request\" (a mirror the request "
                               "named) or \"origin\" (another registry).", ["source"], registry=self.registry)
        self.fallbacks = Counter("puller_mirror_fallbacks", "Mirrors skipped for an image (they failed or could not "
                                 "be trusted): a configured mirror by host, else \"request\".", ["mirror"],
                                 registry=self.registry)
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
                self.sources.labels(source=self._labels.source(row)).inc()
            for skipped in row.get("mirrors") or ():
                self.fallbacks.labels(mirror=self._labels.mirror(skipped["mirror"])).inc()

    def job_ended(self, status, seconds, report=None):
        self.job_seconds.observe(seconds)
        self.rows(report)

    def render(self):
        return generate_latest(self.registry)


class EndpointLabels:
    """Hosts as label values: those of the operator's mirror map (its mirrors
    and the registries they front) by name, any other as its kind."""

    REQUEST, ORIGIN = "request", "origin"

    def __init__(self, mirrors):
        self._mirrors = set(host for hosts in mirrors.values() for host in hosts)
        self._known = self._mirrors | set(mirrors)

    def mirror(self, host):
        return host if host in self._mirrors else self.REQUEST

    def source(self, row):
        host = row["source"]
        if host in self._known:
            return host
        try:
            origin = parse_reference(row["image"]).domain
        except InvalidReference:
            origin = None
        return self.ORIGIN if host == origin else self.REQUEST


class _JobCounts:
    """``puller_jobs{status}``: jobs in the store by status, read at scrape time."""

    def __init__(self, counts):
        self._counts = counts

    def collect(self):
        family = GaugeMetricFamily("puller_jobs", "Jobs in the store by status.", labels=["status"])
        for status, count in sorted(self._counts().items()):
            family.add_metric([status], count)
        yield family
