"""The job store: SQLite (WAL) under the state dir.

One row per job and one per requested image. An image's row is written when
that image ends, not when the job ends, so a crash loses at most what was in
flight. Nothing secret is stored: requests are kept without ``auth_config``
(an entry only records that it had one), rows carry no credentials. The
history is still the owner's only: files 0600, a directory created 0700.

The state dir is locked (``flock``) for as long as the store is open, so two
servers cannot share it; a directory that cannot be created, written or
locked, or a database that fails its integrity check, raises ``StateError``
naming the path and the reason. A write the disk or the database refuses
later (a full disk) raises ``StoreUnavailable``, a ``StateError``; the write
is rolled back whole, and the store takes writes again once it can.

Each job's images are counted by phase (``phase_counts``), by triggers on
the entries, so the counts change in the very statement, and transaction,
that writes an entry, whoever writes it: a listing reads no entries. They
have a narrow table of their own because an update of a jobs row rewrites the
whole row, request and report included, which on every image that ends would
cost in proportion to the job's size.
"""

import contextlib
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
# Statements, not a script: made in one transaction with the counting of the
# entries already there (a database from before the counts).
COUNTS = (
    """CREATE TABLE phase_counts (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        phase TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (job_id, phase)
    ) WITHOUT ROWID""",
    """CREATE TRIGGER count_new_entry AFTER INSERT ON entries BEGIN
        INSERT INTO phase_counts (job_id, phase, n) VALUES (new.job_id, new.phase, 1)
            ON CONFLICT (job_id, phase) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER count_moved_entry AFTER UPDATE OF phase ON entries WHEN old.phase IS NOT new.phase BEGIN
        UPDATE phase_counts SET n = n - 1 WHERE job_id = old.job_id AND phase = old.phase;
        INSERT INTO phase_counts (job_id, phase, n) VALUES (new.job_id, new.phase, 1)
            ON CONFLICT (job_id, phase) DO UPDATE SET n = n + 1;
    END""",
    "INSERT INTO phase_counts (job_id, phase, n) SELECT job_id, phase, COUNT(*) FROM entries GROUP BY job_id, phase",
)
# A listing's columns: neither the request nor the report, which only a job's own page shows.
_LISTED = "id, kind, status, created, created_ts, started, finished, error, resumed"
DB_NAME = "puller.db"
LOCK_NAME = "lock"
PROBE_NAME = ".write-test"
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_CHUNK = 500  # jobs looked up per query (SQLite allows a bounded number of parameters)


class StateError(Exception):
    """The state dir cannot be used; the message names the path and the reason."""


class StoreUnavailable(StateError):
    """A write the store could not make (a full disk, an I/O error); nothing of it was kept."""

    def __init__(self, path, exc):
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        super().__init__("the job store %s cannot be written: %s" % (path, reason))
        self.path = path


class JobStore:
    """Thread-safe (one connection, one lock); every write is counted and timed."""

    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, DB_NAME)
        self._lock = threading.Lock()
        self.writes = 0
        self.write_seconds = 0.0
        self._lockfile = _lock_dir(state_dir)
        try:
            for name in (self.path, self.path + "-wal", self.path + "-shm"):
                fd = _owner_only(name, create=name == self.path)
                if fd is not None:
                    os.close(fd)
        except OSError as exc:
            self._lockfile.close()
            raise StateError("cannot use the job database %s: %s" % (self.path, exc.strerror or exc))
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
            self._migrate()
        except sqlite3.Error as exc:
            self._lockfile.close()
            raise StateError("cannot use the job database %s: %s" % (self.path, exc))

    def close(self):
        with self._lock:
            self._db.close()
        self._lockfile.close()

    def _migrate(self):
        """The phase counts and their triggers, made once; the jobs already stored are counted with them."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'phase_counts'").fetchone():
            return
        with self._db:
            self._db.execute("BEGIN")
            for statement in COUNTS:
                self._db.execute(statement)

    # -- writes ------------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self, transaction=True):
        """The connection for one write (one transaction), counted and timed.

        What the disk or the database refuses is rolled back whole and raised
        as ``StoreUnavailable``, so the next write starts clean.
        """
        with self._lock:
            t0 = time.perf_counter()
            try:
                if transaction:
                    with self._db:
                        self._db.execute("BEGIN")
                        yield self._db
                else:
                    yield self._db
            except (sqlite3.DatabaseError, OSError) as exc:  # OperationalError is a DatabaseError
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.rollback()
                raise StoreUnavailable(self.path, exc) from None
            finally:
                self.writes += 1
                self.write_seconds += time.perf_counter() - t0

    def insert(self, job, request, entries):
        """A new job; ``entries``: ``[(index, phase), ...]``."""
        with self._writing() as db:
            db.execute("INSERT INTO jobs (id, kind, status, created, created_ts, request) VALUES (?, ?, ?, ?, ?, ?)",
                       (job["id"], job["kind"], job["status"], job["created"], job["created_ts"], json.dumps(request)))
            db.executemany("INSERT INTO entries (job_id, idx, phase) VALUES (?, ?, ?)",
                           [(job["id"], idx, phase) for idx, phase in entries])

    def update_job(self, job_id, **fields):
        if "report" in fields and fields["report"] is not None:
            fields["report"] = json.dumps(fields["report"])
        names = sorted(fields)
        if not names:
            return
        with self._writing(transaction=False) as db:
            db.execute("UPDATE jobs SET %s WHERE id = ?" % ", ".join("%s = ?" % n for n in names),
                       [fields[n] for n in names] + [job_id])

    def finish_entries(self, job_id, rows):
        """``rows``: ``[(index, phase, attempts, row dict or None), ...]``; the job's phase counts follow."""
        if not rows:
            return
        with self._writing(transaction=len(rows) > 1) as db:  # one statement is a transaction of its own
            db.executemany("UPDATE entries SET phase = ?, attempts = ?, row = ? WHERE job_id = ? AND idx = ?",
                           [(phase, attempts, json.dumps(row) if row is not None else None, job_id, idx)
                            for idx, phase, attempts, row in rows])

    def purge(self, before_ts):
        """Delete ended jobs that finished before ``before_ts``; returns how many."""
        with self._writing(transaction=False) as db:
            return db.execute("DELETE FROM jobs WHERE finished_ts IS NOT NULL AND finished_ts < ?",
                              (before_ts,)).rowcount

    # -- reads -------------------------------------------------------------------
    def get(self, job_id):
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            entries = self._db.execute("SELECT * FROM entries WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
        return _job(row), [_entry(e) for e in entries]

    def list(self, status=None, limit=50):
        """Newest first, each with ``phases`` (how many of its images are in each phase), without request
        and report: no entry is read, whatever the jobs' sizes."""
        sql, params = "SELECT %s FROM jobs" % _LISTED, []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        sql += " ORDER BY created_ts DESC LIMIT ?"
        params.append(limit)
        with self._lock:
            jobs = [_job(row) for row in self._db.execute(sql, params).fetchall()]
            by_id = {job["id"]: job for job in jobs}
            ids = list(by_id)
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                for job_id, phase, n in self._db.execute(
                        "SELECT job_id, phase, n FROM phase_counts WHERE n > 0 AND job_id IN (%s)"
                        % ", ".join("?" * len(chunk)), chunk):
                    by_id[job_id]["phases"][phase] = n
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
    if "request" in job:  # a listing has neither request nor report
        job["request"] = json.loads(job["request"])
        job["report"] = json.loads(job["report"]) if job["report"] else None
    job["phases"] = {}
    return job


def _entry(row):
    entry = dict(row)
    entry["row"] = json.loads(entry["row"]) if entry["row"] else None
    return entry


def _owner_only(path, create=False):
    """Make the store file ``path`` readable and writable by its owner only,
    creating it (empty) if asked; returns its descriptor, or None when absent.

    The store holds the job history, so no other user may read it. SQLite
    creates the WAL and shared-memory files with the database's mode, so a
    database made 0600 first keeps them 0600 too; files an earlier version
    left as the umask made them are tightened here.
    """
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), PRIVATE_FILE)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except PermissionError:
        pass  # another user's file, writable by us: its mode is that user's choice
    except BaseException:
        os.close(fd)
        raise
    return fd


def _private_dir(state_dir):
    """Created 0700; an existing one of ours that holds nothing but the store
    is tightened (never a shared directory such as /tmp or a home)."""
    os.makedirs(state_dir, mode=PRIVATE_DIR, exist_ok=True)
    st = os.stat(state_dir)
    ours = all(name.startswith(DB_NAME) or name in (LOCK_NAME, PROBE_NAME) for name in os.listdir(state_dir))
    if st.st_mode & 0o077 and st.st_uid == os.geteuid() and ours:
        os.chmod(state_dir, PRIVATE_DIR)


def _lock_dir(state_dir):
    try:
        _private_dir(state_dir)
        probe = os.path.join(state_dir, PROBE_NAME)
        with os.fdopen(_owner_only(probe, create=True), "w") as fh:
            fh.write("ok")
        os.remove(probe)
        lockfile = os.fdopen(_owner_only(os.path.join(state_dir, LOCK_NAME), create=True), "a+")
    except OSError as exc:
        raise StateError("cannot use the state dir %s: %s" % (state_dir, exc.strerror or exc))
    try:
        fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lockfile.close()
        raise StateError("cannot use the state dir %s: another puller process holds it" % state_dir)
    return lockfile
