"""A job in memory: its images' phases, bytes and progress, fed by engine events.

Pure bookkeeping, no I/O: the manager feeds ``Job.apply`` with engine events
and publishes what it returns. Progress never goes down: a layer discovered
late adds to the total, so each image's and the job's figure is kept as the
highest seen, and ends at 100 when everything has ended.

A job's counts by phase and the sum of its images' progress are kept as
entries move (an entry tells its job), never recounted over all entries: an
event costs the same in a job of 20 000 images as in one of 10.
"""

import collections
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
        self._phase = WAITING
        self.attempts = 0
        self.row = None
        self._layers = {}  # layer -> (done bytes, total bytes, fraction 0..1)
        self._sums = (0, 0, 0.0)  # of the layers' done bytes, total bytes and fractions
        self._progress = 0.0
        self._job = None  # the Job whose counts follow this entry

    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, phase):
        if phase == self._phase:
            return
        before, left = self.progress, self._phase
        self._phase = phase
        if self._job is not None:
            self._job._moved(left, phase, self.progress - before)  # pylint: disable=protected-access

    @property
    def ended(self):
        return self._phase in IMAGE_ENDED

    def layer(self, detail):
        layer = detail["layer"]
        old = self._layers.get(layer, (0, 0, 0.0))
        done, total, fraction = old
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
        before = self._sums
        self._sums = tuple(s + new - was for s, new, was in zip(self._sums, (done, total, fraction), old))
        now = max(self._progress, min(100.0 * self._sums[2] / len(self._layers), 99.0))
        job = self._job
        if job is not None:
            job._bytes_moved(self._sums[0] - before[0], self._sums[1] - before[1])  # pylint: disable=protected-access
            if not self.ended:
                job._progressed(now - self._progress)  # pylint: disable=protected-access
        self._progress = now

    @property
    def bytes_done(self):
        return self._sums[0]

    @property
    def bytes_total(self):
        return self._sums[1]

    @property
    def progress(self):
        return 100.0 if self.ended else self._progress

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
        self.kind = kind  # "job" (POST /jobs), "pull" (POST /pull) or "preheat" (POST /jobs with preheat.to)
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
        self._phases = collections.Counter()  # phase -> how many entries are in it
        self._progress_sum = 0.0  # of the entries' progress
        self._bytes = (0, 0)  # of the entries' layer bytes: done, total
        for entry in entries:
            entry._job = self  # pylint: disable=protected-access
            self._moved(None, entry.phase, entry.progress)

    def _moved(self, left, phase, progress_delta):
        """An entry went from phase ``left`` (None: it is new) to ``phase``."""
        if left is not None:
            self._phases[left] -= 1
        self._phases[phase] += 1
        self._progress_sum += progress_delta

    def _progressed(self, delta):
        self._progress_sum += delta

    def _bytes_moved(self, done_delta, total_delta):
        self._bytes = (self._bytes[0] + done_delta, self._bytes[1] + total_delta)

    def figures(self):
        """What ``/metrics`` shows of the job, from what the job API shows: its counts (``done``: images
        ended), its images' layer bytes summed, and their progress summed in images (each 0..1)."""
        counts = self.counts()
        return dict(counts, done=counts["succeeded"] + counts["failed"] + counts["cancelled"],
                    bytes_done=self._bytes[0], bytes_total=self._bytes[1],
                    images_progress=round(self._progress_sum / 100.0, 6))  # no float dust: 1 when all ended

    def map_references(self, pairs):
        """``[(reference string, entry index), ...]``: which entries an engine event speaks of."""
        for reference, index in pairs:
            self._by_reference.setdefault(reference, []).append(self.entries[index])

    @classmethod
    def from_store(cls, job_row, entries):
        """A job as the store holds it; ``entries`` None for a listing: no entries are built, the
        counts are the ones the store keeps with the job (enough for ``as_dict(images=False)``)."""
        body = job_row.get("request") or {}  # a listing comes without request and report
        job_entries = []
        for index, item in enumerate(body.get("images") or [] if entries is not None else []):
            item = item if isinstance(item, dict) else {"image": item}
            job_entries.append(Entry(index, item.get("image", ""), item.get("tag") or "", item.get("project") or ""))
        job = cls(job_row["id"], job_row["kind"], job_entries, body, job_row["created"], job_row["created_ts"])
        job.status, job.started, job.finished = job_row["status"], job_row["started"], job_row["finished"]
        job.report, job.error, job.resumed = job_row.get("report"), job_row["error"], job_row["resumed"]
        if entries is None:
            for phase, n in (job_row.get("phases") or {}).items():
                job._phases[phase] += n  # an image the store has not seen end has made no progress
                job._progress_sum += 100.0 * n if phase in IMAGE_ENDED else 0.0
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
        phases = self._phases
        return {"desired": sum(phases.values()), "active": phases[PULLING] + phases[RETRYING],
                "succeeded": phases[SUCCEEDED], "failed": phases[FAILED], "cancelled": phases[CANCELLED]}

    @property
    def progress(self):
        desired = sum(self._phases.values())
        if self.status == SUCCEEDED or (self.ended and sum(self._phases[p] for p in IMAGE_ENDED) == desired):
            self._progress = 100.0
        elif desired:
            self._progress = max(self._progress, min(self._progress_sum / desired, 99.9))
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
