"""The store on real SQLite: a full database, the phase counts it keeps, databases made before them.

A full disk is SQLite's ``SQLITE_FULL``; ``PRAGMA max_page_count`` makes the
database full at its current size, which is the same error from the same code.
"""

import json
import logging
import sqlite3

import pytest

from puller.jobs.store import DB_NAME, JobStore, StoreUnavailable
from puller.jobs.writes import KeptWrites

ROW = {"image": "img", "tag": "latest", "project": "", "cost": "1s", "retried": 1, "errmsg": "", "digest": "",
       "id": "", "previous_id": "", "status": "pulled"}


def job(job_id):
    return {"id": job_id, "kind": "job", "status": "queued", "created": "2024-01-01T00:00:00Z", "created_ts": 1.0}


def insert(store, job_id, n):
    store.insert(job(job_id), {"images": ["img-%d" % i for i in range(n)]}, [(i, "waiting") for i in range(n)])


def fill(store):
    """The database may not grow any more."""
    (pages,) = store._db.execute("PRAGMA page_count").fetchone()  # pylint: disable=protected-access
    store._db.execute("PRAGMA max_page_count = %d" % pages)  # pylint: disable=protected-access


def make_room(store):
    store._db.execute("PRAGMA max_page_count = 1073741823")  # pylint: disable=protected-access


def big_row(status="failed"):
    return dict(ROW, status=status, errmsg="x" * 40000)  # needs pages of its own


@pytest.fixture
def store(tmp_path):
    opened = JobStore(str(tmp_path / "state"))
    yield opened
    opened.close()


def test_a_full_database_refuses_a_job_whole_and_takes_the_next_once_there_is_room(store):
    insert(store, "a", 3)
    fill(store)
    with pytest.raises(StoreUnavailable) as refused:
        insert(store, "b", 2000)
    assert store.path in str(refused.value) and "database or disk is full" in str(refused.value)
    assert [j["id"] for j in store.list()] == ["a"] and store.get("b") is None
    with pytest.raises(StoreUnavailable):
        store.finish_entries("a", [(0, "failed", 1, big_row())])
    assert store.list()[0]["phases"] == {"waiting": 3}  # the entry and its count, rolled back together
    make_room(store)
    insert(store, "b", 2000)
    store.finish_entries("a", [(0, "failed", 1, big_row())])
    assert store.list(limit=5)[1]["phases"] == {"waiting": 2, "failed": 1}


def test_phase_counts_follow_every_finished_entry(store):
    insert(store, "a", 1200)  # more entries than one lookup takes
    store.finish_entries("a", [(i, "succeeded", 1, ROW) for i in range(1000)])
    store.finish_entries("a", [(0, "failed", 2, dict(ROW, status="failed")), (1, "succeeded", 1, ROW)])
    store.finish_entries("a", [(5000, "succeeded", 1, ROW)])  # no such entry: nothing to count
    store.finish_entries("a", [(1100, "cancelled", 0, None), (1100, "failed", 0, None)])  # the last word counts
    (listed,) = store.list()
    assert listed["phases"] == {"waiting": 199, "succeeded": 999, "failed": 2}
    assert "request" not in listed and "report" not in listed
    _row, entries = store.get("a")
    recount = {}
    for entry in entries:
        recount[entry["phase"]] = recount.get(entry["phase"], 0) + 1
    assert recount == listed["phases"]


def test_a_database_made_before_the_counts_gets_them_when_opened(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(str(state / DB_NAME), isolation_level=None)
    db.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL,
            created_ts REAL NOT NULL, started TEXT, finished TEXT, finished_ts REAL, request TEXT NOT NULL,
            report TEXT, error TEXT, resumed INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE entries (job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, idx INTEGER NOT NULL,
            phase TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, row TEXT, PRIMARY KEY (job_id, idx));
    """)
    for job_id, phases in (("old", ["succeeded", "succeeded", "failed"]), ("empty", [])):
        db.execute("INSERT INTO jobs (id, kind, status, created, created_ts, request) VALUES (?, 'job', "
                   "'failed', '2024-01-01T00:00:00Z', 1.0, ?)", (job_id, json.dumps({"images": ["x"] * len(phases)})))
        db.executemany("INSERT INTO entries (job_id, idx, phase) VALUES (?, ?, ?)",
                       [(job_id, i, p) for i, p in enumerate(phases)])
    db.close()
    opened = JobStore(str(state))
    try:
        assert {j["id"]: j["phases"] for j in opened.list()} == {"old": {"succeeded": 2, "failed": 1}, "empty": {}}
        opened.finish_entries("old", [(2, "succeeded", 1, ROW)])
        assert {j["id"]: j["phases"] for j in opened.list()}["old"] == {"succeeded": 3}
    finally:
        opened.close()


def test_kept_writes_wait_for_room_and_are_logged_once_per_job(store, caplog):
    insert(store, "a", 3)
    writes = KeptWrites(store)
    fill(store)
    with caplog.at_level(logging.INFO, logger="puller.jobs"):
        writes.update_job("a", status="running", started="2024-01-01T00:00:01Z")
        for index in range(3):
            writes.finish_entries("a", [(index, "failed", 1, big_row())])
        writes.update_job("a", status="failed", finished="2024-01-01T00:00:02Z", report={"failure": ["r"]})
        assert writes.pending() == 1 and not writes.flush()
        refused = [r for r in caplog.records if "cannot be written" in r.getMessage()]
        assert len(refused) == 1 and "job a" in refused[0].getMessage()
        assert store.get("a")[0]["status"] == "running"  # that one needed no new page
        make_room(store)
        assert writes.flush() and writes.pending() == 0
    stored, entries = store.get("a")
    assert (stored["status"], stored["started"], stored["report"]) == ("failed", "2024-01-01T00:00:01Z",
                                                                       {"failure": ["r"]})
    assert [e["phase"] for e in entries] == ["failed"] * 3 and store.list()[0]["phases"] == {"failed": 3}
    writes.update_job("a", error="later")  # nothing kept: straight to the store
    assert store.get("a")[0]["error"] == "later"
