"""The store writes of running jobs, kept in memory while the store refuses them.

A full disk under the state dir must not stop a job: its images are pulled
and its report made whatever the store says. A write the store refuses
(``StoreUnavailable``) is kept, merged per job (the latest fields, each
image's latest row), and written again by ``flush`` once the store takes
writes; the job's trouble is logged once, not once per write.
"""

import collections
import logging
import threading

from puller.jobs.store import StoreUnavailable

log = logging.getLogger("puller.jobs")


class KeptWrites:
    def __init__(self, store):
        self.store = store
        # One lock around every write, kept or not: a kept write of a job and
        # a newer one of the same job never cross.
        self._lock = threading.Lock()
        self._kept = collections.OrderedDict()  # job id -> (fields, {entry index: row})

    def update_job(self, job_id, **fields):
        self._write(job_id, fields, ())

    def finish_entries(self, job_id, rows):
        self._write(job_id, {}, rows)

    def pending(self):
        """How many jobs have writes the store has not taken yet."""
        with self._lock:
            return len(self._kept)

    def _write(self, job_id, fields, rows):
        with self._lock:
            if job_id not in self._kept:  # else behind the job's kept writes, in their order
                try:
                    _apply(self.store, job_id, fields, rows)
                    return
                except StoreUnavailable as exc:
                    log.error("job %s: %s; the job goes on, its state kept in memory until the store takes "
                              "writes again", job_id, exc)
                    self._kept[job_id] = ({}, {})
            kept_fields, kept_rows = self._kept[job_id]
            kept_fields.update(fields)
            kept_rows.update((row[0], row) for row in rows)

    def flush(self):
        """Write what the store refused before, oldest job first; True when nothing is left."""
        with self._lock:
            while self._kept:
                job_id, (fields, rows) = next(iter(self._kept.items()))
                try:
                    _apply(self.store, job_id, fields, list(rows.values()))
                except StoreUnavailable:
                    return False
                del self._kept[job_id]
                log.info("job %s: its state is in the store again", job_id)
            return True


def _apply(store, job_id, fields, rows):
    if rows:
        store.finish_entries(job_id, rows)
    if fields:
        store.update_job(job_id, **fields)
