"""The job store: SQLite (WAL) under the state dir.

One row per job and one per requested image. An image's row is written when
that image ends, not when the job ends, so a crash loses at most what was in
flight. Nothing secret is stored: requests are kept without ``auth_config``
(an entry only records that it had one), rows carry no credentials.

The state dir is locked (``flock``) for as long as the store is open, so two
servers cannot share it; a directory that cannot be created, written or
locked, or a database that fails its integrity check, raises ``StateError``
naming the path and the reason.
"""

import fcntl
import json
import os
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created TEXT NOT NULL,
    created_ts REAL NOT NULL,
    started TEXT,
    finished TEXT,
    finished_ts REAL,
    request TEXT NOT NULL,
    report TEXT,
    error TEXT,
    resumed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_ts);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE TABLE IF NOT EXISTS entries (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    phase TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    row TEXT,
    PRIMARY KEY (job_id, idx)
);
"""
DB_NAME = "puller.db"
LOCK_NAME = "lock"


class StateError(Exception):
    """The state dir cannot be used; the message names the path and the reason."""


class JobStore:
    """Thread-safe (one connection, one lock); every write is counted and timed."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, DB_NAME)
        self._lock = threading.Lock()
        self.writes = 0
        self.write_seconds = 0.0
        self._lockfile = _lock_dir(state_dir)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            (check,) = self._db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError("integrity check failed: %s" % check)
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self._lockfile.close()
            raise StateError("cannot use the job database %s: %s" % (self.path, exc))

    def close(self):
        with self._lock:
            self._db.close()
        self._lockfile.close()

    # -- writes ------------------------------------------------------------------
    def _write(self, sql, params=(), many=False):
        with self._lock:
            t0 = time.perf_counter()
            try:
                if many:
                    self._db.executemany(sql, params)
                else:
                    self._db.execute(sql, params)
            finally:
                self.writes += 1
                self.write_seconds += time.perf_counter() - t0

    def insert(self, job, request, entries):
        """A new job; ``entries``: ``[(index, phase), ...]``."""
        with self._lock:
            t0 = time.perf_counter()
            with self._db:  # one transaction
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT INTO jobs (id, kind, status, created, created_ts, request) VALUES (?, ?, ?, ?, ?, ?)",
                    (job["id"], job["kind"], job["status"], job["created"], job["created_ts"], json.dumps(request)))
                self._db.executemany("INSERT INTO entries (job_id, idx, phase) VALUES (?, ?, ?)",
                                     [(job["id"], idx, phase) for idx, phase in entries])
            self.writes += 1
            self.write_seconds += time.perf_counter() - t0

    def update_job(self, job_id, **fields):
        if "report" in fields and fields["report"] is not None:
            fields["report"] = json.dumps(fields["report"])
        names = sorted(fields)
        self._write("UPDATE jobs SET %s WHERE id = ?" % ", ".join("%s = ?" % n for n in names),
                    [fields[n] for n in names] + [job_id])

    def finish_entries(self, job_id, rows):
        """``rows``: ``[(index, phase, attempts, row dict or None), ...]``."""
        self._write("UPDATE entries SET phase = ?, attempts = ?, row = ? WHERE job_id = ? AND idx = ?",
                    [(phase, attempts, json.dumps(row) if row is not None else None, job_id, idx)
                     for idx, phase, attempts, row in rows], many=True)

    def purge(self, before_ts):
        """Delete ended jobs that finished before ``before_ts``; returns how many."""
        with self._lock:
            cur = self._db.execute("DELETE FROM jobs WHERE finished_ts IS NOT NULL AND finished_ts < ?",
                                   (before_ts,))
            return cur.rowcount

    # -- reads -------------------------------------------------------------------
    def get(self, job_id):
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            entries = self._db.execute("SELECT * FROM entries WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
        return _job(row), [_entry(e) for e in entries]

    def list(self, status=None, limit=50):
        """Newest first, each with ``phases``: how many of its images are in each phase."""
        sql, params = "SELECT * FROM jobs", []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY created_ts DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            jobs = [_job(row) for row in self._db.execute(sql, params).fetchall()]
            for job in jobs:
                job["phases"] = dict(self._db.execute(
                    "SELECT phase, COUNT(*) FROM entries WHERE job_id = ? GROUP BY phase", (job["id"],)))
        return jobs

    def unfinished(self):
        """Jobs that were queued or running when the last process stopped, oldest first."""
        with self._lock:
            ids = [r["id"] for r in self._db.execute(
                "SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created_ts")]
        return [self.get(job_id) for job_id in ids]

    def count(self):
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]

    def counts_by_status(self):
        with self._lock:
            return {row[0]: row[1] for row in self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status")}


def _job(row):
    job = dict(row)
    job["request"] = json.loads(job["request"])
    job["report"] = json.loads(job["report"]) if job["report"] else None
    return job


def _entry(row):
    entry = dict(row)
    entry["row"] = json.loads(entry["row"]) if entry["row"] else None
    return entry


def _lock_dir(state_dir):
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        probe = os.path.join(state_dir, ".write-test")
        with open(probe, "w") as fh:
            fh.write("ok")
        os.remove(probe)
        lockfile = open(os.path.join(state_dir, LOCK_NAME), "a+")
    except OSError as exc:
        raise StateError("cannot use the state dir %s: %s" % (state_dir, exc.strerror or exc))
    try:
        fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lockfile.close()
        raise StateError("cannot use the state dir %s: another puller process holds it" % state_dir)
    return lockfile
