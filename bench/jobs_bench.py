"""What jobs cost: watchers, many jobs at once, and the SQLite store.

    bench/run.sh jobs

Prints one table:
- ``/pull`` of the many-small set (60 images) with nobody watching, and with
  three event-stream clients plus the status page's traffic (a fourth stream
  and a ``GET /jobs`` every 2 s) attached; runs alternate, median of 3 each;
  goal: overhead <= 3 %;
- 5 jobs x 60 images at once with the page's traffic: ``/ping`` p50/p99 from
  4 clients; goal p99 < 50 ms;
- a 1 000-image job (1 000 tags of the fixture set, pushed as manifests only):
  SQLite writes counted and timed by the store (``/debug/dump``), as a share
  of the job's wall time; goal <= 2 %;
- what grows with a job's size: dry runs of 1 000, 4 000 and 20 000 images
  (``/pull``, nothing asked of a registry), whose bookkeeping must stay
  linear; ``GET /jobs?limit=20`` over 20 finished 1 000-image jobs, from
  memory and after a restart (from the store), and ``/ping`` while 5 clients
  list them without pause. ``--baseline DIR`` runs these against the source
  tree in DIR too (e.g. ``git archive HEAD | tar -x -C DIR``), side by side.
"""

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench import PRESETS, Bench, print_rows, test_ground
from server_bench import percentile, ping_latencies

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class Watchers:
    """Event-stream clients of whatever job runs now, and the page's polling."""

    def __init__(self, url, streams, page):
        self.url, self.stop, self.events, self.threads = url, threading.Event(), [0], []
        for _i in range(streams):
            self.threads.append(threading.Thread(target=self._stream))
        if page:
            self.threads.append(threading.Thread(target=self._page))
        for thread in self.threads:
            thread.start()

    def _stream(self):
        # A client learns a job's id from POST /jobs, or from the list as the
        # page does: look for the new job every 50 ms (not in a tight loop,
        # which would measure the polling rather than the watching).
        seen = set()
        while not self.stop.is_set():
            listed = requests.get(self.url + "/jobs?limit=5", timeout=10).json()["jobs"]
            fresh = [job for job in listed if job["id"] not in seen and job["status"] in ("queued", "running")]
            seen.update(job["id"] for job in listed if job["status"] not in ("queued", "running"))
            if not fresh:
                time.sleep(0.05)
                continue
            seen.add(fresh[0]["id"])
            with requests.get(self.url + "/jobs/%s/events" % fresh[0]["id"], stream=True, timeout=600) as resp:
                for line in resp.iter_lines():
                    if line:
                        self.events[0] += 1

    def _page(self):
        while not self.stop.is_set():
            requests.get(self.url + "/jobs?limit=20", timeout=10)
            self.stop.wait(2.0)

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def timed_pull(bench, images, n):
    bench.clean()
    t0 = time.perf_counter()
    resp = requests.post(bench.server_url + "/pull", json={"concurrency": n, "images": images}, timeout=3600)
    assert resp.status_code == 200, resp.text[:300]
    return time.perf_counter() - t0


def tags_of(bench, name, count, tags):
    """``tags`` references: the set's manifests put again under new tags (no layers move)."""
    refs = []
    for i in range(tags):
        repo = "%s/img-%02d" % (name, i % count + 1)
        tag = "t%04d" % i
        head = requests.head("http://%s/v2/%s/manifests/%s" % (bench.registry, repo, tag),
                             headers={"Accept": MANIFEST}, timeout=10)
        if head.status_code != 200:
            manifest = requests.get("http://%s/v2/%s/manifests/latest" % (bench.registry, repo),
                                    headers={"Accept": MANIFEST}, timeout=10)
            put = requests.put("http://%s/v2/%s/manifests/%s" % (bench.registry, repo, tag), data=manifest.content,
                               headers={"Content-Type": MANIFEST}, timeout=10)
            assert put.status_code == 201, put.text
        refs.append("%s/%s:%s" % (bench.registry, repo, tag))
    return refs


def measure(bench, runs):
    rows = []
    name, count, layers, kib, shared, n = PRESETS["many-small"]
    images = bench.ensure_set(name, count, layers, kib, shared)
    bench.start_server()
    try:
        quiet, watched, delivered = [], [], []
        for _round in range(runs):
            quiet.append(timed_pull(bench, images, n))
            watchers = Watchers(bench.server_url, 3, page=True)
            time.sleep(0.3)
            watched.append(timed_pull(bench, images, n))
            watchers.close()
            delivered.append(watchers.events[0])
        overhead = statistics.median(watched) / statistics.median(quiet) - 1
        rows.append(("/pull of 60 images, nobody watching", "%.2f s (%s)" % (
            statistics.median(quiet), " ".join("%.2f" % t for t in quiet)), ""))
        rows.append(("same, 3 event streams + the page attached", "%.2f s (%s), %d events delivered" % (
            statistics.median(watched), " ".join("%.2f" % t for t in watched), statistics.median(delivered)),
            "overhead %+.1f %% (goal <= 3 %%)" % (100 * overhead)))

        bench.clean()
        page = Watchers(bench.server_url, 1, page=True)
        pings, stop = [], threading.Event()
        pingers = [threading.Thread(target=ping_latencies, args=(bench.server_url, stop, pings)) for _i in range(4)]
        for pinger in pingers:
            pinger.start()
        t0 = time.perf_counter()
        ids = [requests.post(bench.server_url + "/jobs", json={"concurrency": n, "images": images},
                             timeout=30).json()["id"] for _i in range(5)]
        for job_id in ids:
            while requests.get(bench.server_url + "/jobs/" + job_id, timeout=10).json()["status"] in ("queued", "running"):
                time.sleep(0.2)
        took = time.perf_counter() - t0
        stop.set()
        for pinger in pingers:
            pinger.join()
        page.close()
        rows.append(("/ping p50 / p99 during 5 jobs x 60 images, page open", "%.2f / %.2f ms (%d pings, %.1f s)" % (
            percentile(pings, 50), percentile(pings, 99), len(pings), took), "goal p99 < 50 ms"))

        refs = tags_of(bench, name, count, 1000)
        bench.clean()
        before = requests.get(bench.server_url + "/debug/dump", timeout=10).json()["store"]
        t0 = time.perf_counter()
        job_id = requests.post(bench.server_url + "/jobs", json={"concurrency": n, "images": refs},
                               timeout=30).json()["id"]
        while requests.get(bench.server_url + "/jobs/" + job_id, timeout=30).json()["status"] in ("queued", "running"):
            time.sleep(0.5)
        took = time.perf_counter() - t0
        after = requests.get(bench.server_url + "/debug/dump", timeout=10).json()["store"]
        writes, seconds = after["writes"] - before["writes"], after["write_seconds"] - before["write_seconds"]
        rows.append(("SQLite writes for a 1 000-image job", "%d writes, %.3f s of %.1f s" % (writes, seconds, took),
                     "%.2f %% of the job (goal <= 2 %%)" % (100 * seconds / took)))
    finally:
        bench.stop()
    return rows


DRY_RUNS = (1000, 4000, 20000)
LISTED_JOBS, LISTED_SIZE = 20, 1000


def _timed(method, url, session=requests, **kwargs):
    t0 = time.perf_counter()
    resp = session.request(method, url, timeout=3600, **kwargs)
    assert resp.status_code == 200, resp.text[:300]
    return time.perf_counter() - t0


def _listing_ms(url, times=20):
    session = requests.Session()  # one connection, as the page keeps: the listing is timed, not TCP's set-up
    return statistics.median(_timed("GET", url + "/jobs?limit=%d" % LISTED_JOBS, session)
                             for _i in range(times)) * 1000


def _pings_while_listing(url, clients=5, seconds=5.0):
    stop, pings = threading.Event(), []

    def poll():
        session = requests.Session()
        while not stop.is_set():
            session.get(url + "/jobs?limit=%d" % LISTED_JOBS, timeout=60)

    threads = [threading.Thread(target=poll) for _i in range(clients)]
    threads.append(threading.Thread(target=ping_latencies, args=(url, stop, pings)))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return percentile(pings, 50), percentile(pings, 99)


def scaling(bench, tree=None):
    """The figures that grow with a job's size, for this checkout (``tree`` None) or the tree at ``tree``."""
    if tree and not Path(tree, "puller", "core").exists():
        # The package maps puller.core to the collection's module_utils; a bare tree needs the link.
        os.symlink(os.path.join("..", "plugins", "module_utils"), os.path.join(tree, "puller", "core"))
    name, count = PRESETS["many-small"][:2]
    base = "%s/%s/img-%%02d:dry%%05d" % (bench.registry, name)
    extra = ("--state-dir", tempfile.mkdtemp(prefix="puller-bench-state-"), "--max-images", str(max(DRY_RUNS)),
             "--max-body", str(8 << 20))
    out = {}
    bench.start_server(*extra, tree=tree)
    try:
        for n in DRY_RUNS:
            refs = [base % (i % count + 1, i) for i in range(n)]
            before = requests.get(bench.server_url + "/debug/dump", timeout=10).json()["store"]
            out["dry %d" % n] = _timed("POST", bench.server_url + "/pull",
                                       json={"dry_run": True, "concurrency": 10, "images": refs})
            after = requests.get(bench.server_url + "/debug/dump", timeout=10).json()["store"]
            out["writes %d" % n] = (after["writes"] - before["writes"],
                                    after["write_seconds"] - before["write_seconds"])
        for _i in range(LISTED_JOBS):  # the newest 20: finished, 1 000 images each
            _timed("POST", bench.server_url + "/pull", json={"dry_run": True, "concurrency": 10, "images": [
                base % (i % count + 1, i) for i in range(LISTED_SIZE)]})
        out["list live"] = _listing_ms(bench.server_url)
        out["pings"] = _pings_while_listing(bench.server_url)
    finally:
        bench.stop()
    bench.start_server(*extra, tree=tree)  # the same state dir: the jobs are read from the store
    try:
        out["list stored"] = _listing_ms(bench.server_url)
    finally:
        bench.stop()
    return out


def scaling_rows(after, before=None):
    def shown(key, fmt):
        value = fmt(after[key])
        return value if before is None else "%s (before: %s)" % (value, fmt(before[key]))

    def seconds(v):
        return "%.2f s" % v

    rows = []
    for n in DRY_RUNS:
        per = "%.0f us per image" % (1e6 * after["dry %d" % n] / n)
        if before is not None:
            per += " (before: %.0f us)" % (1e6 * before["dry %d" % n] / n)
        rows.append(("dry run of %s images (/pull)" % format(n, ",").replace(",", " "), shown("dry %d" % n, seconds),
                     per + "; goal: flat"))
    rows.append(("SQLite writes for the 1 000-image dry run",
                 shown("writes 1000", lambda v: "%d writes, %.3f s" % tuple(v)), "counted and timed by the store"))
    for key, label in (("list live", "this server's"), ("list stored", "after a restart: the store's")):
        rows.append(("GET /jobs?limit=20, %s 20 finished 1 000-image jobs" % label,
                     shown(key, lambda v: "%.1f ms" % v), "median of 20"))
    rows.append(("/ping p50 / p99 while 5 clients list them without pause",
                 shown("pings", lambda v: "%.2f / %.2f ms" % v), ""))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", metavar="DIR", help="another source tree to measure the growing figures of")
    parser.add_argument("--only-scaling", action="store_true", help="only the figures that grow with a job's size")
    args = parser.parse_args()
    with test_ground() as env_dir:
        bench = Bench(env_dir)
        rows = [] if args.only_scaling else measure(bench, args.runs)
        before = scaling(bench, os.path.abspath(args.baseline)) if args.baseline else None
        rows += scaling_rows(scaling(bench), before)
    print_rows(rows, args.json)


if __name__ == "__main__":
    main()
