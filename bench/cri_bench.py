"""Kubernetes nodes: 60 small images into containerd through the CRI; print a table.

    bench/run.sh cri              # --runs 5 for more rounds

Every method pulls the many-small set (60 images x 2 x 256 KiB) from the test
ground's loopback registry into its private containerd (the CRI plugin's
``k8s.io`` namespace), with no image and no blob left before every run:

- puller /pull: ``puller serve --runtime-endpoint``, one request, concurrency 10;
- PullImage threads: 10 threads calling the CRI's ``PullImage`` on a gRPC
  channel of their own, nothing else: no report, deadline, shared pulls or progress;
- serial ctr pull: kubespray's pattern, one ``ctr -n k8s.io images pull`` per
  image in turn (nerdctl and crictl are not packaged here; ``ctr`` is).

Methods alternate within each round (the order rotates), so drift on a noisy
machine hits all of them alike. Goals: puller <= 1.05 x the thread loop,
serial >= 2 x puller.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import requests

from bench import PRESETS, ROOT, Bench, free_port, test_ground, wait_for_ping
from report import cri_table

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from criwatch import empty_store  # noqa: E402  pylint: disable=wrong-import-position
from puller.core._cri_api import CriClient  # noqa: E402  pylint: disable=wrong-import-position
from puller.core._cri_proto import MESSAGES  # noqa: E402  pylint: disable=wrong-import-position

PRESET = "many-small"


class CriBench:
    def __init__(self, bench):
        self.bench = bench
        env = bench.env
        self.env = env
        self.socket = env["PULLER_TEST_CRI_SOCKET"]
        self.endpoint = env["PULLER_TEST_CRI_ENDPOINT"]
        self.client = CriClient(self.endpoint, timeout=120)
        self.server = self.url = None

    def start_server(self):
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        state = subprocess.run(["mktemp", "-d", "/tmp/puller-bench-cri-XXXXXX"], check=True, capture_output=True,
                               text=True).stdout.strip()
        self.server = subprocess.Popen([sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % port,
                                        "--runtime-endpoint", self.endpoint, "--log-level", "WARNING",
                                        "--state-dir", state])
        wait_for_ping(self.url)

    def stop(self):
        if self.server:
            self.server.terminate()
            self.server.wait(30)
        self.client.close()

    def clean(self):
        empty_store(self.client, self.env)

    # -- methods: each pulls `images` with concurrency n and raises on failure --
    def puller_api(self, images, n):
        resp = requests.post(self.url + "/pull", json={"concurrency": n, "images": images}, timeout=3600)
        if resp.status_code != 200:
            raise RuntimeError(resp.text[:500])

    def pullimage_threads(self, images, n):
        channel = grpc.insecure_channel(self.endpoint)
        pull = channel.unary_unary("/runtime.v1.ImageService/PullImage",
                                   request_serializer=MESSAGES["runtime.v1.PullImageRequest"].SerializeToString,
                                   response_deserializer=MESSAGES["runtime.v1.PullImageResponse"].FromString)

        def one(image):
            pull(MESSAGES["runtime.v1.PullImageRequest"](image=MESSAGES["runtime.v1.ImageSpec"](image=image)))

        try:
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(one, images))
        finally:
            channel.close()

    def serial_ctr(self, images, n):
        ctr = [self.env["PULLER_TEST_CTR"], "--address", self.socket, "-n", self.env["PULLER_TEST_CRI_NAMESPACE"]]
        for image in images:
            # loopback registries speak plain HTTP; the CRI plugin knows that by itself, ctr is told
            done = subprocess.run(ctr + ["images", "pull", "--plain-http", image], check=False,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                raise RuntimeError("ctr pull %s: %s" % (image, done.stderr[-500:]))


METHODS = {
    "puller /pull": CriBench.puller_api,
    "PullImage threads": CriBench.pullimage_threads,
    "serial ctr pull": CriBench.serial_ctr,
}


def run(cri, runs):
    name, count, layers, kib, shared, n = PRESETS[PRESET]
    images = cri.bench.ensure_set(name, count, layers, kib, shared)
    methods = list(METHODS)
    times = {m: [] for m in methods}
    for r in range(runs):
        for method in methods[r % len(methods):] + methods[:r % len(methods)]:
            cri.clean()
            t0 = time.perf_counter()
            METHODS[method](cri, images, n)
            times[method].append(time.perf_counter() - t0)
            held = len([i for i in cri.client.list_images() if i["repo_tags"]])
            if held < count:
                raise RuntimeError("%s left %d of %d images in containerd" % (method, held, count))
            print("  cri / %s run %d: %.2fs" % (method, r + 1, times[method][-1]), file=sys.stderr)
    threads = statistics.median(times["PullImage threads"])
    puller = statistics.median(times["puller /pull"])
    return [{"preset": PRESET, "images": count, "concurrency": n, "method": m,
             "median_s": round(statistics.median(times[m]), 3), "runs": [round(t, 3) for t in times[m]],
             "ratio_to_threads": round(statistics.median(times[m]) / threads, 2),
             "ratio_to_puller": round(statistics.median(times[m]) / puller, 2)} for m in methods]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with test_ground() as env_dir:
        cri = CriBench(Bench(env_dir))
        try:
            cri.start_server()
            rows = run(cri, args.runs)
        finally:
            cri.stop()
    print("\n".join(cri_table(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
