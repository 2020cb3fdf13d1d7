"""Runs pull jobs on the engine, stores them, and fans their events out.

Every pull the server makes is a job: ``POST /jobs`` answers at once, ``POST
/pull`` waits for its job (or streams it). A job runs in a thread of its own
(a greenlet under the server's monkey patching) on the shared engine, so the
engine's caps, shared pulls, retries and deadlines apply unchanged.

What the store keeps of a request, and the jobs a restart finds unfinished,
are ``puller.jobs.resume``'s.
"""

import collections
import logging
import threading
import time
import uuid

from puller.core._engine import STATUS_PRESENT, STATUS_UP_TO_DATE, STATUS_WOULD_PULL, row_extra
from puller.core._errors import DaemonUnavailable, PullerError
from puller.core._godur import format_duration, rfc3339_now
from puller.core._request import parse_pull_request
from puller.core._shared import STATUS_CANCELLED, STATUS_PULLED
from puller.jobs import model
from puller.jobs.events import Broker
from puller.jobs.resume import Resuming, public_body
from puller.jobs.resume import needs_auth as _needs_auth
from puller.jobs.store import JobStore, StoreUnavailable
from puller.jobs.writes import KeptWrites

log = logging.getLogger("puller.jobs")

SUCCESS_STATUSES = (STATUS_PULLED, STATUS_UP_TO_DATE, STATUS_PRESENT, STATUS_WOULD_PULL)
PROGRESS_INTERVAL = 0.25  # seconds between progress events of one image
RECENT_IN_MEMORY = 100
# Kinds of job that --max-jobs counts: those of POST /jobs (a /pull holds its connection instead).
LIMITED_KINDS = ("job", "preheat")


class TooManyJobs(PullerError):
    """More than ``max_jobs`` queued or running."""


class NoSuchJob(PullerError):
    pass


class JobEnded(PullerError):
    pass


class _Run:
    """What a job's thread needs besides the job: the request and where its specs sit."""

    def __init__(self, job, request, positions, kept_rows):
        self.job = job
        self.request = request
        self.positions = positions  # spec i of request -> entry index
        self.kept_rows = kept_rows  # entry index -> row, for images that ended before a restart
        self.done = threading.Event()
        self.shutdown = False
        self.last_progress = {}


class JobManager(Resuming):
    _run_type = _Run  # what ``Resuming`` makes the runs of resumed jobs with

    def __init__(self, engine, store: JobStore, runner, *, max_jobs, retention, max_images, metrics=None):
        self.engine = engine
        self.store = store
        self.runner = runner
        self.max_jobs = max_jobs
        self.retention = retention
        self.max_images = max_images
        self.metrics = metrics
        self.parse = parse_pull_request  # the server sets its own, with its mirrors
        # The engine a job runs on: the runtime's, or (the server sets its own) a site's for a preheat.
        self.engine_for = lambda job: self.engine
        self._lock = threading.Lock()
        self._runs = {}  # job id -> _Run, for jobs queued or running
        self._recent = collections.OrderedDict()  # job id -> Job, ended here lately (served from memory)
        self.events = Broker()
        self._stopping = False
        self.writes = KeptWrites(store)  # a running job's writes: kept while the store refuses them
        self._refusing = False  # the store refused the last new job

    # -- submitting ---------------------------------------------------------------
    def submit(self, request, body, kind="job"):
        with self._lock:
            if kind in LIMITED_KINDS and self._active_count() >= self.max_jobs:
                raise TooManyJobs("%d jobs are queued or running; the limit is %d" % (self._active_count(),
                                                                                      self.max_jobs))
            job = self._new_job(uuid.uuid4().hex, kind, request, body)
            run = _Run(job, request, [spec.index for spec in request.specs], {})
            self._runs[job.id] = run
        try:
            self.store.insert({"id": job.id, "kind": kind, "status": job.status, "created": job.created,
                               "created_ts": job.created_ts}, public_body(body),
                              [(e.index, e.phase) for e in job.entries])
        except BaseException as exc:
            with self._lock:  # a job the store did not take holds no slot
                self._runs.pop(job.id, None)
            if isinstance(exc, StoreUnavailable) and not self._refusing:
                self._refusing = True
                log.error("new jobs are refused until the store takes writes again: %s", exc)
            raise
        if self._refusing:
            self._refusing = False
            log.info("the job store takes writes again; new jobs are accepted")
        self.writes.flush()  # the store takes writes: what it refused before goes in now
        self._start(run)
        return job

    def _new_job(self, job_id, kind, request, body, created=None, created_ts=None):
        entries = [model.Entry(spec.index, spec.image, spec.tag, spec.project, _needs_auth(body, spec.index))
                   for spec in request.specs]
        job = model.Job(job_id, kind, entries, public_body(body), created, created_ts)
        job.map_references((str(spec.ref), spec.index) for spec in request.specs)
        return job

    def _active_count(self):
        return sum(1 for run in self._runs.values() if run.job.kind in LIMITED_KINDS)

    def _start(self, run):
        if self.metrics is not None:  # new and resumed jobs alike: their gauges show from now on
            self.metrics.job_queued(run.job)
        thread = threading.Thread(target=self._run, args=(run,), name="job %s" % run.job.id)
        thread.daemon = True
        thread.start()

    # -- running ------------------------------------------------------------------
    def _run(self, run):
        job = run.job
        try:
            if job.resumed:
                self.writes.update_job(job.id, resumed=job.resumed)
                self._publish(job, {"type": "status", "status": job.status, "resumed": job.resumed})
            t0 = time.monotonic()
            if run.request is None:  # resumed with every image ended: the rows are the report
                rows = dict(run.kept_rows)
                self._end(run, self._status(job, rows), self._report(job, rows, None, t0), rows)
                return
            try:
                report = self.engine_for(job).pull(run.request, runner=self.runner,
                                                   on_event=lambda event: self._on_event(run, event),
                                                   cancel=job.cancel)
            except DaemonUnavailable as exc:
                job.error = str(exc)
                self._end(run, model.FAILED, None)
                return
            rows = self._rows(run, report)
            self._end(run, self._status(job, rows), self._report(job, rows, report, t0), rows)
        except Exception:  # pylint: disable=broad-except
            log.exception("job %s failed unexpectedly", job.id)
            job.error = "internal error"
            self._end(run, model.FAILED, None)

    def _started(self, job):
        """Queued until the daemon works on it (it may wait for the server-wide cap)."""
        with job.lock:
            if job.status != model.QUEUED:
                return
            job.status, job.started = model.RUNNING, job.started or rfc3339_now()
        self.writes.update_job(job.id, status=job.status, started=job.started)
        self._publish(job, {"type": "status", "status": job.status, "resumed": job.resumed})

    def _on_event(self, run, event):
        job = run.job
        if event.kind != "attempt":  # a daemon slot is held, or nothing was needed
            self._started(job)
        if event.kind == "started":
            return
        if event.kind == "done":
            self._end_image(run, event)
            return
        with job.lock:
            published = job.apply(event)
        if published is None:
            return
        if event.kind in ("progress", "layer"):
            now = time.monotonic()
            if now - run.last_progress.get(event.reference, 0.0) < PROGRESS_INTERVAL:
                return
            run.last_progress[event.reference] = now
            published["type"] = "progress"
        self._publish(job, published)

    def _end_image(self, run, event):
        """An image ended: its row is written now, not when the job ends."""
        job, done = run.job, event.detail
        if run.shutdown and done.status == STATUS_CANCELLED:
            return  # stopped by a shutdown: it stays waiting, for the resume
        phase = (model.SUCCEEDED if done.status in SUCCESS_STATUSES else
                 model.CANCELLED if done.status == STATUS_CANCELLED else model.FAILED)
        rows = []
        with job.lock:
            for entry in job.entries_for(event.reference):
                row = {"image": entry.image, "tag": entry.tag, "project": entry.project,
                       "cost": format_duration(done.cost), "retried": done.attempts, "errmsg": done.error or "",
                       "digest": done.digest or "", "id": "", "previous_id": "", "status": done.status}
                row.update(row_extra(done.extra, phase == model.FAILED))  # as the report's row will have them
                job.end_entry(entry.index, phase, done.attempts, row)
                rows.append((entry.index, phase, done.attempts, row))
            progress = round(job.progress, 1)
        if not rows:
            return
        if self.metrics is not None:
            self.metrics.image_ended(event.reference, done, job.entries[rows[0][0]])
        self.writes.finish_entries(job.id, rows)
        self._publish(job, {"type": "done", "image": event.reference, "indexes": [r[0] for r in rows],
                            "status": done.status, "phase": phase, "attempts": done.attempts,
                            "errmsg": done.error or "", "job_progress": progress})

    def _rows(self, run, report):
        """Entry index -> final row: this run's report, plus rows kept from before a restart.

        The engine lists rows in request order, split into success and
        failure; an image's status at its end tells which list holds its row.
        """
        rows = dict(run.kept_rows)
        success, failure = iter(report.success), iter(report.failure)
        for index in run.positions:
            entry = run.job.entries[index]
            failed = entry.row is None or entry.row["status"] not in SUCCESS_STATUSES
            rows[index] = next(failure) if failed else next(success)
        return rows

    def _status(self, job, rows):
        if job.cancel.is_set() and any(r["status"] == STATUS_CANCELLED for r in rows.values()):
            return model.CANCELLED
        return model.SUCCEEDED if all(r["status"] in SUCCESS_STATUSES for r in rows.values()) else model.FAILED

    def _report(self, job, rows, report, t0):
        if not job.resumed:
            return report.as_dict()
        ordered = [rows[e.index] for e in job.entries]
        return {"success": [r for r in ordered if r["status"] in SUCCESS_STATUSES],
                "failure": [r for r in ordered if r["status"] not in SUCCESS_STATUSES],
                "startAt": job.started or job.created, "cost": format_duration(time.monotonic() - t0)}

    def _end(self, run, status, report, rows=None):
        job = run.job
        try:
            if run.shutdown:
                # Stopped by a shutdown: left queued in the store for the next start.
                self.writes.update_job(job.id, status=model.QUEUED)
                self._publish(job, {"type": "shutdown", "status": model.QUEUED})
            else:
                finished = []
                with job.lock:
                    for index, row in (rows or {}).items():
                        entry = job.entries[index]
                        phase = model.SUCCEEDED if row["status"] in SUCCESS_STATUSES else (
                            model.CANCELLED if row["status"] == STATUS_CANCELLED else model.FAILED)
                        entry.phase, entry.row = phase, row
                        finished.append((index, phase, entry.attempts, row))
                    job.status, job.report, job.finished = status, report, rfc3339_now()
                if finished:  # the rows with image IDs replace those written as images ended
                    self.writes.finish_entries(job.id, finished)
                self.writes.update_job(job.id, status=status, finished=job.finished, finished_ts=time.time(),
                                       report=report, error=job.error)
                if self.metrics is not None:
                    self.metrics.job_ended(status, time.time() - job.created_ts,
                                           report if job.kind == "job" else None, job=job)
                final = {"type": "report", "ok": status == model.SUCCEEDED, "status": status}
                final.update(report or {"error": job.error})
                self._publish(job, final)
        finally:  # whatever happened above, the job leaves its slot and its waiters hear of it
            with self._lock:
                self._runs.pop(job.id, None)
                if not run.shutdown:
                    self._recent[job.id] = job
                    while len(self._recent) > RECENT_IN_MEMORY:  # older ones are read from the store
                        self._recent.popitem(last=False)
            self.events.close(job.id)
            run.done.set()

    # -- reading ------------------------------------------------------------------
    def get(self, job_id):
        """The job as a dict, live if it runs here, else from the store."""
        with self._lock:
            run = self._runs.get(job_id)
            job = run.job if run is not None else self._recent.get(job_id)
        if job is not None:
            with job.lock:
                return job.as_dict()
        stored = self.store.get(job_id)
        if stored is None:
            raise NoSuchJob("no job %s" % job_id)
        return self._rehydrate(*stored).as_dict()

    def list(self, status=None, limit=50):
        jobs = []
        for row in self.store.list(status, limit):
            with self._lock:
                run = self._runs.get(row["id"])
                live = run.job if run is not None else self._recent.get(row["id"])
            if live is not None:  # what memory says is newer, also when the store could not take writes
                with live.lock:
                    job = live.as_dict(images=False)
            else:
                job = self._rehydrate(row, None).as_dict(images=False)
            if status is None or job["status"] == status:
                jobs.append(job)
        return jobs

    def wait(self, job_id, timeout=None):
        with self._lock:
            run = self._runs.get(job_id)
        if run is not None:
            run.done.wait(timeout)

    def cancel(self, job_id):
        with self._lock:
            run = self._runs.get(job_id)
        if run is None:
            self.get(job_id)  # NoSuchJob when unknown
            raise JobEnded("job %s has ended" % job_id)
        run.job.cancel.set()
        return run

    def subscribe(self, job_id):
        """``(state, queue or None)``: the job now, then its live events (None once it has ended)."""
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None:
                q = self.events.subscribe(job_id)
                with run.job.lock:
                    return run.job.as_dict(), q
        return self.get(job_id), None

    def unsubscribe(self, job_id, q):
        self.events.unsubscribe(job_id, q)

    def _publish(self, job, event):
        self.events.publish(job.id, event)

    # -- restarts, retention, shutdown --------------------------------------------
    @staticmethod
    def _rehydrate(job_row, entries):
        return model.Job.from_store(job_row, entries)

    def purge(self):
        """Run now and then: deletes old jobs, and writes what the store refused before."""
        self.writes.flush()
        try:
            deleted = self.store.purge(time.time() - self.retention)
        except StoreUnavailable as exc:
            log.warning("old jobs are not deleted yet: %s", exc)
            deleted = 0
        cutoff = time.time() - self.retention
        with self._lock:
            for job_id in [j for j, job in self._recent.items() if job.created_ts < cutoff]:
                self._recent.pop(job_id, None)
        return deleted

    def shutdown(self, timeout):
        """Let running jobs finish for up to ``timeout``; stop the rest, kept queued for the next start."""
        self._stopping = True
        end = time.monotonic() + timeout
        for run in list(self._runs.values()):
            run.done.wait(max(0.0, end - time.monotonic()))
        left = list(self._runs.values())
        for run in left:
            run.shutdown = True
            run.job.cancel.set()
        for run in left:
            run.done.wait(5)
        if not self.writes.flush():
            log.error("the job store cannot be written: the state of %d job(s) is lost", self.writes.pending())
        return len(left)
