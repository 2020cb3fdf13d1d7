"""A job in memory: its images' phases, bytes and progress, fed by engine events.

Pure bookkeeping, no I/O: the manager feeds ``Job.apply`` with engine events
and publishes what it returns. Progress never goes down: a layer discovered
late adds to the total, so each image's and the job's figure is kept as the
highest seen, and ends at 100 when everything has ended.
"""

import threading
import time

from puller.core._godur import rfc3339_now

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "succeeded", "failed", "cancelled", "interrupted")
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
ENDED = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
WAITING, PULLING, RETRYING = "waiting", "pulling", "retrying"
IMAGE_PHASES = (WAITING, PULLING, RETRYING, SUCCEEDED, FAILED, CANCELLED)
IMAGE_ENDED = (SUCCEEDED, FAILED, CANCELLED)

# Of a layer's progress, downloading is most of the work; extracting the rest.
_DOWNLOAD_SHARE = 0.8


class Entry:
    """One requested image of a job."""

    def __init__(self, index, image, tag, project, needs_auth=False):
        self.index = index
        self.image = image
        self.tag = tag
        self.project = project
        self.needs_auth = needs_auth
        self.phase = WAITING
        self.attempts = 0
        self.row = None
        self._layers = {}  # layer -> (done bytes, total bytes, fraction 0..1)
        self._progress = 0.0

    @property
    def ended(self):
        return self.phase in IMAGE_ENDED

    def layer(self, detail):
        layer = detail["layer"]
        done, total, fraction = self._layers.get(layer, (0, 0, 0.0))
        if detail.get("done"):
            fraction = 1.0
            done = total = total or 0
        elif detail.get("total"):
            share = detail["current"] / float(detail["total"])
            if detail["phase"] == "Extracting":
                fraction = max(fraction, _DOWNLOAD_SHARE + (1 - _DOWNLOAD_SHARE) * share)
            else:
                fraction = max(fraction, _DOWNLOAD_SHARE * share)
                done, total = detail["current"], detail["total"]
        self._layers[layer] = (done, total, fraction)

    @property
    def bytes_done(self):
        return sum(done for done, _t, _f in self._layers.values())

    @property
    def bytes_total(self):
        return sum(total for _d, total, _f in self._layers.values())

    @property
    def progress(self):
        if self.ended:
            return 100.0
        if self._layers:
            now = 100.0 * sum(f for _d, _t, f in self._layers.values()) / len(self._layers)
            self._progress = max(self._progress, min(now, 99.0))
        return self._progress

    def as_dict(self):
        entry = {"index": self.index, "image": self.image, "tag": self.tag, "project": self.project,
                 "phase": self.phase, "attempts": self.attempts, "progress": round(self.progress, 1),
                 "bytes_done": self.bytes_done, "bytes_total": self.bytes_total}
        if self.row is not None:
            entry["row"] = self.row
        return entry


class Job:
    """A pull job: what was asked, how far it is, and the final report."""

    def __init__(self, job_id, kind, entries, request, created=None, created_ts=None):
        self.id = job_id
        self.kind = kind  # "job" (POST /jobs) or "pull" (POST /pull)
        self.entries = entries
        self.request = request  # the body without credentials
        self.status = QUEUED
        self.created = created or rfc3339_now()
        self.created_ts = created_ts or time.time()
        self.started = None
        self.finished = None
        self.report = None
        self.error = None
        self.resumed = 0
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        self._by_reference = {}
        self._progress = 0.0

    def map_references(self, pairs):
        """``[(reference string, entry index), ...]``: which entries an engine event speaks of."""
        for reference, index in pairs:
            self._by_reference.setdefault(reference, []).append(self.entries[index])

    @classmethod
    def from_store(cls, job_row, entries):
        """A job as the store holds it; ``entries`` None for a listing (phases counted by the store)."""
        body = job_row["request"]
        job_entries = []
        for index, item in enumerate(body.get("images") or []):
            item = item if isinstance(item, dict) else {"image": item}
            job_entries.append(Entry(index, item.get("image", ""), item.get("tag") or "", item.get("project") or ""))
        job = cls(job_row["id"], job_row["kind"], job_entries, body, job_row["created"], job_row["created_ts"])
        job.status, job.started, job.finished = job_row["status"], job_row["started"], job_row["finished"]
        job.report, job.error, job.resumed = job_row["report"], job_row["error"], job_row["resumed"]
        if entries is None:
            phases = [p for p, n in (job_row.get("phases") or {}).items() for _i in range(n)]
            for entry, phase in zip(job.entries, phases):
                entry.phase = phase
        for stored in entries or ():
            entry = job.entries[stored["idx"]]
            entry.phase, entry.attempts, entry.row = stored["phase"], stored["attempts"], stored["row"]
            if entry.row:
                entry.tag = entry.row.get("tag", entry.tag)
        return job

    @property
    def ended(self):
        return self.status in ENDED

    def entries_for(self, reference):
        """The entries an engine event about ``reference`` speaks of that have not ended yet."""
        return [e for e in self._by_reference.get(reference, ()) if not e.ended]

    def counts(self):
        phases = [e.phase for e in self.entries]
        return {"desired": len(phases), "active": phases.count(PULLING) + phases.count(RETRYING),
                "succeeded": phases.count(SUCCEEDED), "failed": phases.count(FAILED),
                "cancelled": phases.count(CANCELLED)}

    @property
    def progress(self):
        if self.status == SUCCEEDED or (self.ended and all(e.ended for e in self.entries)):
            self._progress = 100.0
        elif self.entries:
            now = sum(e.progress for e in self.entries) / len(self.entries)
            self._progress = max(self._progress, min(now, 99.9))
        return self._progress

    def apply(self, event):
        """Update from an engine ``PullEvent``; returns the event to publish, or None."""
        entries = self.entries_for(event.reference)
        if not entries:
            return None
        kind, detail = event.kind, event.detail
        published = {"type": kind, "image": event.reference, "indexes": [e.index for e in entries]}
        for entry in entries:
            if kind == "attempt":
                entry.phase, entry.attempts = PULLING, max(entry.attempts, event.attempt or 0)
            elif kind == "retry":
                entry.phase = RETRYING
            elif kind in ("progress", "layer"):
                entry.layer(detail)
        if kind == "attempt":
            published["attempt"] = event.attempt
        elif kind == "retry":
            published.update(attempt=event.attempt, error=detail["error"], delay=round(detail["delay"], 3))
        elif kind in ("progress", "layer"):
            first = entries[0]
            published.update(progress=round(first.progress, 1), bytes_done=first.bytes_done,
                             bytes_total=first.bytes_total)
        published["job_progress"] = round(self.progress, 1)
        return published

    def end_entry(self, index, phase, attempts, row):
        entry = self.entries[index]
        entry.phase, entry.attempts, entry.row = phase, attempts, row

    def as_dict(self, images=True):
        job = {"id": self.id, "kind": self.kind, "status": self.status, "created": self.created,
               "started": self.started, "finished": self.finished, "progress": round(self.progress, 1),
               "resumed": self.resumed}
        job.update(self.counts())
        if self.error:
            job["error"] = self.error
        if images:
            job["images"] = [e.as_dict() for e in self.entries]
            job["report"] = self.report
        return job
