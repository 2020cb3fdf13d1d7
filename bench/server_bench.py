"""The server under load: latency, memory, and many identical requests at once.

    bench/run.sh server

Prints one table: idle RSS; /ping latency p50/p99 idle and during a 60-image
pull; RSS after 1 000 requests; and, over a simulated slow link (20 ms RTT,
200 Mbit/s), 50 concurrent identical /pull requests against one: wall time and
manifest requests the registry saw, next to 10 concurrent ``docker pull``s of
the same image against one.
"""

import argparse
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import PRESETS, ROOT, Bench, print_rows, test_ground
from slowlink import SlowLink

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from faultproxy import FaultProxy  # noqa: E402  pylint: disable=wrong-import-position


def rss_mib(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1.0


def ping_latencies(url, stop, out):
    session = requests.Session()
    while not stop.is_set():
        t0 = time.perf_counter()
        session.get(url + "/ping", timeout=10)
        out.append((time.perf_counter() - t0) * 1000)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def measure(bench):
    rows = []
    try:
        name, count, layers, kib, shared, n = PRESETS["many-small"]
        images = bench.ensure_set(name, count, layers, kib, shared)
        bench.clean()
        bench.start_server()
        pid = bench.server.pid
        time.sleep(1)
        rows.append(("idle RSS", "%.1f MiB" % rss_mib(pid), "goal < 80 MiB"))

        idle = []
        stop = threading.Event()
        t = threading.Thread(target=ping_latencies, args=(bench.server_url, stop, idle))
        t.start()
        time.sleep(2)
        stop.set()
        t.join()
        rows.append(("/ping idle p50 / p99", "%.2f / %.2f ms (%d pings)" % (
            percentile(idle, 50), percentile(idle, 99), len(idle)), ""))

        busy = []
        stop = threading.Event()
        pingers = [threading.Thread(target=ping_latencies, args=(bench.server_url, stop, busy)) for _i in range(4)]
        for p in pingers:
            p.start()
        t0 = time.perf_counter()
        resp = requests.post(bench.server_url + "/pull", json={"concurrency": n, "images": images}, timeout=600)
        pull_s = time.perf_counter() - t0
        stop.set()
        for p in pingers:
            p.join()
        assert resp.status_code == 200, resp.text[:300]
        rows.append(("/ping p50 / p99 during a 60-image pull (4 clients)", "%.2f / %.2f ms (%d pings, pull %.1fs)" % (
            percentile(busy, 50), percentile(busy, 99), len(busy), pull_s), "goal p99 < 50 ms"))

        session = requests.Session()
        for i in range(1000):
            if i % 10 == 0:
                session.post(bench.server_url + "/pull", json={"images": [images[i % 60]], "pull": "missing"})
            elif i % 10 == 1:
                session.get(bench.server_url + "/debug/dump")
            else:
                session.get(bench.server_url + "/ping")
        rows.append(("RSS after 1 000 requests (pings, dumps, pulls)", "%.1f MiB" % rss_mib(pid), ""))

        # 50 identical requests over the slow link, through a counting proxy.
        counter = FaultProxy(int(bench.registry.rsplit(":", 1)[1]))
        link = SlowLink(counter.port, 0.010, 200.0)
        image = "%s/%s/img-01:latest" % (link.address, name)

        def timed_pulls(k, pull):
            bench.clean()
            counter.reset_stats()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(k) as pool:
                list(pool.map(lambda _i: pull(), range(k)))
            return time.perf_counter() - t0, len(counter.manifest_requests)

        def puller_pull():
            r = requests.post(bench.server_url + "/pull", json={"images": [image]}, timeout=600)
            assert r.status_code == 200, r.text[:300]

        def docker_pull():
            subprocess.run(["docker", "-H", "unix://" + bench.socket, "pull", "-q", image], check=True,
                           stdout=subprocess.DEVNULL)

        for label, pull, k in (("puller /pull", puller_pull, 50), ("docker pull", docker_pull, 10)):
            one = [timed_pulls(1, pull) for _i in range(3)]
            many = [timed_pulls(k, pull) for _i in range(3)]
            rows.append(("%s: 1 request, slow link" % label, "%.2f s, %d manifest requests" % (
                statistics.median(x[0] for x in one), max(x[1] for x in one)), ""))
            rows.append(("%s: %d identical at once, slow link" % (label, k), "%.2f s, %d manifest requests" % (
                statistics.median(x[0] for x in many), max(x[1] for x in many)), "goal: manifests <= one pull's"))
        link.close()
        counter.close()
    finally:
        bench.stop()
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    args = parser.parse_args()
    with test_ground() as env_dir:
        rows = measure(Bench(env_dir))
    print_rows(rows, args.json)


if __name__ == "__main__":
    main()
