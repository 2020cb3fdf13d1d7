"""Time puller against what a platform team would script instead; print a table.

    .venv/bin/python bench/bench.py                       # all presets, 3 runs each
    .venv/bin/python bench/bench.py --presets seed20 --runs 5

Every method pulls the same images from the same loopback registry into the
same daemon, with an empty image store before every run; methods alternate
within each round so that drift on a noisy machine hits all of them alike.
The table shows the median of the runs and the ratio to ``xargs -P``.
Uses the test ground of ``scripts/testenv.sh`` (its own, unless
PULLER_TESTENV points at a running one).
"""

import argparse
import contextlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests

from slowlink import SlowLink

ROOT = Path(__file__).resolve().parents[1]
TESTENV = ROOT / "scripts" / "testenv.sh"

# name: (image set, count, layers, KiB per layer, shared base KiB, concurrency)
PRESETS = {
    "seed20": ("fixture", 20, 3, 64, 0, 10),
    "many-small": ("many-small", 60, 2, 256, 0, 10),
    "few-large": ("few-large", 12, 4, 8192, 8192, 10),
    # many-small again, through a simulated 20 ms RTT, 200 Mbit/s link
    "slow-many-small": ("many-small", 60, 2, 256, 0, 10),
}
SLOW = {"slow-many-small": (0.010, 200.0)}


def read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0]
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def test_ground():
    """The running test ground named by PULLER_TESTENV, or a throwaway one."""
    env_dir = os.environ.get("PULLER_TESTENV")
    if env_dir and Path(env_dir, "env.sh").exists():
        yield env_dir
        return
    env_dir = tempfile.mkdtemp(prefix="puller-bench-")
    os.rmdir(env_dir)
    subprocess.run(["bash", str(TESTENV), "up", env_dir], check=True, stdout=subprocess.DEVNULL)
    try:
        yield env_dir
    finally:
        subprocess.run(["bash", str(TESTENV), "down", env_dir], check=False)


def print_rows(rows, json_path=None):
    """A benchmark's ``(measure, value, note)`` rows as a table, and as JSON for bench/report.py."""
    print("| measure | value | note |")
    print("| --- | --- | --- |")
    for row in rows:
        print("| %s | %s | %s |" % tuple(row))
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))


class Bench:
    def __init__(self, env_dir):
        self.env_dir = env_dir
        self.env = read_env(Path(env_dir, "env.sh"))
        self.socket = self.env["PULLER_TEST_DOCKER_SOCKET"]
        self.registry = self.env["PULLER_TEST_REGISTRY"]
        self.client = docker.APIClient(base_url="unix://" + self.socket, version="auto", timeout=600)
        self.server = None
        self.server_url = None

    def ensure_set(self, name, count, layers, kib, shared, registry=None):
        catalog = requests.get("http://%s/v2/_catalog?n=1000" % self.registry).json()["repositories"]
        if "%s/img-%02d" % (name, count) not in catalog:
            print("building image set %s (%d x %d x %d KiB)..." % (name, count, layers, kib), file=sys.stderr)
            subprocess.run(["bash", str(TESTENV), "fixtures", self.env_dir, name, str(count), str(layers),
                            str(kib), str(shared)], check=True, stdout=subprocess.DEVNULL)
        return ["%s/%s/img-%02d:latest" % (registry or self.registry, name, n) for n in range(1, count + 1)]

    def clean(self):
        """Empty the image store (what `docker image prune -a` does)."""
        self.client.prune_images(filters={"dangling": False})

    def start_server(self, *extra, tree=None):
        """``tree``: another source tree's puller (one from ``git archive``), to compare with this one."""
        port = free_port()
        self.server_url = "http://127.0.0.1:%d" % port
        env = dict(os.environ, PYTHONPATH=str(tree)) if tree else None
        self.server = subprocess.Popen(
            [sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % port,
             "--docker-socket", self.socket, "--log-level", "WARNING",
             "--state-dir", tempfile.mkdtemp(prefix="puller-bench-state-")] + list(extra), cwd=tree, env=env)
        wait_for_ping(self.server_url)

    def stop(self):
        if self.server:
            self.server.terminate()
            self.server.wait(30)

    # -- methods: each pulls `images` with concurrency n and raises on failure --
    def puller_api(self, images, n):
        resp = requests.post(self.server_url + "/pull", json={"concurrency": n, "images": images}, timeout=3600)
        if resp.status_code != 200:
            raise RuntimeError(resp.text[:500])

    def xargs_docker_pull(self, images, n):
        subprocess.run("xargs -P %d -n 1 docker -H unix://%s pull -q" % (n, self.socket), shell=True,
                       input="\n".join(images).encode(), check=True, stdout=subprocess.DEVNULL)

    def serial_docker_pull(self, images, n):
        for image in images:
            subprocess.run(["docker", "-H", "unix://" + self.socket, "pull", "-q", image], check=True,
                           stdout=subprocess.DEVNULL)

    def dockerpy_threads(self, images, n):
        def pull(image):
            repo, tag = image.rsplit(":", 1)
            for event in self.client.pull(repo, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise RuntimeError(event["error"])

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(pull, images))


METHODS = {
    "puller /pull": Bench.puller_api,
    "xargs -P docker pull": Bench.xargs_docker_pull,
    "docker-py threads": Bench.dockerpy_threads,
    "serial docker pull": Bench.serial_docker_pull,
}


def run(bench, presets, methods, runs):
    results = []
    for preset in presets:
        name, count, layers, kib, shared, n = PRESETS[preset]
        link = None
        if preset in SLOW:
            link = SlowLink(int(bench.registry.rsplit(":", 1)[1]), *SLOW[preset])
        images = bench.ensure_set(name, count, layers, kib, shared, registry=link.address if link else None)
        times = {m: [] for m in methods}
        for r in range(runs):
            order = methods[r % len(methods):] + methods[:r % len(methods)]
            for method in order:
                bench.clean()
                t0 = time.perf_counter()
                METHODS[method](bench, images, n)
                times[method].append(time.perf_counter() - t0)
                print("  %s / %s run %d: %.2fs" % (preset, method, r + 1, times[method][-1]), file=sys.stderr)
        base = statistics.median(times["xargs -P docker pull"]) if "xargs -P docker pull" in times else None
        threads = statistics.median(times["docker-py threads"]) if "docker-py threads" in times else None
        for method in methods:
            med = statistics.median(times[method])
            results.append({"preset": preset, "images": count, "concurrency": n, "method": method,
                            "median_s": round(med, 3), "runs": [round(t, 3) for t in times[method]],
                            "ratio_to_xargs": round(med / base, 2) if base else None,
                            "ratio_to_threads": round(med / threads, 2) if threads else None})
        if link:
            link.close()
    return results


def table(results):
    lines = ["| preset | method | median (s) | runs (s) | / xargs -P | / docker-py threads |",
             "| --- | --- | ---: | --- | ---: | ---: |"]
    for r in results:
        lines.append("| %s (%d images, c=%d) | %s | %.2f | %s | %s | %s |" % (
            r["preset"], r["images"], r["concurrency"], r["method"], r["median_s"],
            " ".join("%.2f" % t for t in r["runs"]),
            "%.2f" % r["ratio_to_xargs"] if r.get("ratio_to_xargs") else "-",
            "%.2f" % r["ratio_to_threads"] if r.get("ratio_to_threads") else "-"))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    presets, methods = args.presets.split(","), args.methods.split(",")
    with test_ground() as env_dir:
        bench = Bench(env_dir)
        try:
            bench.start_server()
            results = run(bench, presets, methods, args.runs)
        finally:
            bench.stop()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()


def wait_for_ping(url, tries=100, log=None):
    """Until a just started ``puller serve`` answers ``/ping``; ``log()`` says why when it never does."""
    for _attempt in range(tries):
        try:
            requests.get(url + "/ping", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("puller serve did not start" + (": %s" % log() if log else ""))
