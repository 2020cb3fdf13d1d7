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
  of the job's wall time; goal <= 2 %.
"""

import argparse
import statistics
import threading
import time

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with test_ground() as env_dir:
        rows = measure(Bench(env_dir), args.runs)
    print_rows(rows, args.json)


if __name__ == "__main__":
    main()
