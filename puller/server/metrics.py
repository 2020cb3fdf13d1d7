"""Prometheus metrics for ``/metrics``, fed by the engine's events.

Label values are bounded by what the operator configured, never by what
callers send: a mirror or registry a request named would otherwise add a
series per host, without end.

Jobs have gauges of their own (``puller_job_*{job_id, kind}``), so that a
rollout over many servers is one PromQL expression. Their series are bounded
by the jobs themselves: a job has series while it is queued or running, and
after it ends, with its final figures, until a newer job of its kind is
queued on this server (at most ``KEEP_ENDED`` ended jobs). A server that has
finished its part of a rollout so still counts in the fleet's sums, and the
end of the rollout is observable; the next rollout starts from its own jobs.
The label is ``job_id``, not ``job``: Prometheus sets ``job`` on every series
it scrapes (the scrape config's ``job_name``).
"""

import collections
import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from puller.core._godur import parse_duration
from puller.core._reference import InvalidReference, parse_reference

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
KEEP_ENDED = 20  # ended jobs whose gauges stay, per server: bounds the series when jobs end faster than new ones come

# name, help, the key of ``Job.figures()`` it shows
JOB_GAUGES = (
    ("puller_job_images_desired", "Images the job asked for.", "desired"),
    ("puller_job_images_done", "Images of the job that have ended, whatever their outcome.", "done"),
    ("puller_job_images_failed", "Images of the job that failed.", "failed"),
    ("puller_job_images_progress", "The job's images' progress summed, in images (each 0 to 1, an ended one 1): "
     "sum(puller_job_images_progress) / sum(puller_job_images_desired) is a fleet's share done.", "images_progress"),
    ("puller_job_bytes_done", "Layer bytes the job's images have downloaded, as the runtime reports them.",
     "bytes_done"),
    ("puller_job_bytes_total", "Layer bytes of the job's images' downloads seen so far (a layer counts once its "
     "download starts).", "bytes_total"),
)


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
        self.pulled_bytes = Counter("puller_pulled_bytes", "Layer bytes of the images jobs pulled, by the endpoint "
                                    "that served them (source as in puller_pulls_by_source) and whether it was a "
                                    "mirror or the image's own registry (via).", ["source", "via"],
                                    registry=self.registry)
        self.jobs = JobGauges()
        self.registry.register(self.jobs)
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

    def job_queued(self, job):
        self.jobs.queued(job)

    def image_ended(self, reference, done, entry):
        """An image of a job ended (``done``: the engine's ``Done``): the bytes its entry counted, by source."""
        if not entry.bytes_done:
            return
        # The engine names the endpoint when the image had mirrors to choose from; without, its registry served it.
        host = (done.extra or {}).get("source")
        row = {"image": reference, "source": host or _domain(reference)}
        self.pulled_bytes.labels(source=self._labels.source(row), via=self._labels.via(row)).inc(entry.bytes_done)

    def job_ended(self, status, seconds, report=None, job=None):
        self.job_seconds.observe(seconds)
        self.rows(report)
        if job is not None:
            self.jobs.ended(job)

    def render(self):
        return generate_latest(self.registry)


class EndpointLabels:
    """Hosts as label values: those of the operator's mirror map (its mirrors
    and the registries they front) by name, any other as its kind."""

    REQUEST, ORIGIN, MIRROR = "request", "origin", "mirror"

    def __init__(self, mirrors):
        self._mirrors = set(host for hosts in mirrors.values() for host in hosts)
        self._known = self._mirrors | set(mirrors)

    def mirror(self, host):
        return host if host in self._mirrors else self.REQUEST

    def source(self, row):
        host = row["source"]
        if host in self._known:
            return host
        return self.ORIGIN if host == _domain(row["image"]) else self.REQUEST

    def via(self, row):
        """``origin`` when the image's own registry served it, else ``mirror`` (the operator's or the request's)."""
        return self.ORIGIN if row["source"] == _domain(row["image"]) else self.MIRROR


def _domain(image):
    try:
        return parse_reference(image).domain
    except InvalidReference:
        return None


class _JobCounts:
    """``puller_jobs{status}``: jobs in the store by status, read at scrape time."""

    def __init__(self, counts):
        self._counts = counts

    def collect(self):
        family = GaugeMetricFamily("puller_jobs", "Jobs in the store by status.", labels=["status"])
        for status, count in sorted(self._counts().items()):
            family.add_metric([status], count)
        yield family


class JobGauges:
    """``puller_job_*{job_id, kind}``: the figures of jobs queued or running, read from them at scrape time
    (``Job.figures``, what the job API shows), and the final figures of those that ended lately."""

    def __init__(self, keep_ended=KEEP_ENDED):
        self._keep = keep_ended
        self._lock = threading.Lock()
        self._live = {}  # job id -> Job
        self._ended = collections.OrderedDict()  # job id -> (kind, figures), oldest first

    def queued(self, job):
        with self._lock:
            for job_id in [j for j, (kind, _figures) in self._ended.items() if kind == job.kind]:
                del self._ended[job_id]
            self._live[job.id] = job

    def ended(self, job):
        with job.lock:
            figures = job.figures()
        self._keep_ended(job, figures)

    def _keep_ended(self, job, figures):
        with self._lock:
            self._live.pop(job.id, None)
            self._ended[job.id] = (job.kind, figures)
            self._ended.move_to_end(job.id)
            while len(self._ended) > self._keep:
                self._ended.popitem(last=False)

    def collect(self):
        with self._lock:
            live = list(self._live.values())
        shown = {}  # job id -> (kind, figures)
        for job in live:
            with job.lock:
                figures, ended = job.figures(), job.ended
            if ended:  # its end went unheard (the manager failed on its way there): it is kept as ended
                self._keep_ended(job, figures)
            shown[job.id] = (job.kind, figures)
        with self._lock:
            shown.update(self._ended)  # a job that ended meanwhile: its final figures
        families = [GaugeMetricFamily(name, text, labels=["job_id", "kind"]) for name, text, _key in JOB_GAUGES]
        for job_id, (kind, figures) in shown.items():
            for family, (_name, _text, key) in zip(families, JOB_GAUGES):
                family.add_metric([job_id, kind], figures[key])
        yield from families
