"""bbklab.puller.prefetch against the alternatives, on one host and on three.

    bench/run.sh ansible          # sets up the benchmark venv, then runs this

Methods, each over the same images and daemons with empty image stores
before every run: the prefetch module in direct mode and in API mode, a
``community.docker.docker_image_pull`` loop (one image per task iteration),
and ``xargs -P`` docker pulls (one xargs per host, all hosts at once).
Needs ``ansible`` (which ships community.docker) in the running Python's
environment.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from bench import PRESETS, ROOT, TESTENV, Bench, free_port, test_ground

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
METHODS = ["prefetch direct", "prefetch API", "community.docker loop", "xargs -P docker pull"]


class Fleet:
    def __init__(self, bench, hosts, tmp):
        out = subprocess.run(["bash", str(TESTENV), "hosts", bench.env_dir, str(hosts)], check=True,
                             capture_output=True, text=True).stdout.split()
        self.sockets = out[:hosts]
        self.tmp = tmp
        venv = Path(bench.env_dir) / "host-venv"
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "docker"], check=True)
        self.host_python = venv / "bin" / "python"
        coll = tmp / "collections" / "ansible_collections" / "bbklab"
        coll.mkdir(parents=True, exist_ok=True)
        if not (coll / "puller").exists():
            (coll / "puller").symlink_to(ROOT)
        self.servers, self.api_urls = [], []
        for sock in self.sockets:
            port = free_port()
            self.servers.append(subprocess.Popen(
                [sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % port,
                 "--docker-socket", sock, "--log-level", "WARNING"]))
            self.api_urls.append("http://127.0.0.1:%d" % port)
        time.sleep(1.5)
        self.clients = [docker.APIClient(base_url="unix://" + s, version="auto", timeout=600) for s in self.sockets]

    def inventory(self, api):
        path = self.tmp / ("hosts-%s.ini" % ("api" if api else "direct"))
        lines = ["[fleet]"]
        for i, sock in enumerate(self.sockets):
            extra = " api_url=%s" % self.api_urls[i] if api else ""
            lines.append("host%d ansible_connection=local docker_host=unix://%s ansible_python_interpreter=%s%s"
                         % (i + 1, sock, self.host_python, extra))
        path.write_text("\n".join(lines) + "\n")
        return path

    def clean(self):
        with ThreadPoolExecutor(len(self.clients)) as pool:
            list(pool.map(lambda client: client.prune_images(filters={"dangling": False}), self.clients))

    def playbook(self, name, images, n, api=False):
        vars_file = self.tmp / "vars.json"
        vars_file.write_text(json.dumps({"images": images, "concurrency": n}))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.tmp / "collections"), ANSIBLE_FORKS="10",
                   ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_DEPRECATION_WARNINGS="False")
        cmd = [str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(self.inventory(api)),
               str(PLAYBOOKS / name), "-e", "@" + str(vars_file)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])

    def xargs(self, images, n):
        procs = [subprocess.Popen("xargs -P %d -n 1 docker -H unix://%s pull -q" % (n, sock), shell=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for sock in self.sockets]
        for p in procs:
            p.communicate("\n".join(images).encode())
            if p.returncode:
                raise RuntimeError("xargs docker pull failed")

    def run(self, method, images, n):
        if method == "prefetch direct":
            self.playbook("prefetch.yml", images, n)
        elif method == "prefetch API":
            self.playbook("prefetch.yml", images, n, api=True)
        elif method == "community.docker loop":
            self.playbook("loop.yml", images, n)
        else:
            self.xargs(images, n)

    def stop(self):
        for server in self.servers:
            server.terminate()
            server.wait(30)


def compare(bench, args, methods):
    """Median times of every method, per host count, methods alternating within each round."""
    name, count, layers, kib, shared, n = PRESETS[args.preset]
    images = bench.ensure_set(name, count, layers, kib, shared)
    results = []
    for hosts in [int(h) for h in args.hosts.split(",")]:
        fleet = Fleet(bench, hosts, Path(tempfile.mkdtemp(prefix="puller-fleet-")))
        try:
            times = {m: [] for m in methods}
            for r in range(args.runs):
                for method in methods[r % len(methods):] + methods[:r % len(methods)]:
                    fleet.clean()
                    t0 = time.perf_counter()
                    fleet.run(method, images, n)
                    times[method].append(time.perf_counter() - t0)
                    print("  %d host(s) / %s run %d: %.2fs" % (hosts, method, r + 1, times[method][-1]),
                          file=sys.stderr)
        finally:
            fleet.stop()
        base = statistics.median(times["xargs -P docker pull"]) if "xargs -P docker pull" in times else None
        for method in methods:
            med = statistics.median(times[method])
            results.append({"preset": args.preset, "images": count, "hosts": hosts, "method": method,
                            "median_s": round(med, 2), "runs": [round(t, 2) for t in times[method]],
                            "ratio_to_xargs": round(med / base, 2) if base else None})
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="many-small")
    parser.add_argument("--hosts", default="1,3")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    methods = args.methods.split(",")
    with test_ground() as env_dir:
        results = compare(Bench(env_dir), args, methods)
    loop = {r["hosts"]: r["median_s"] for r in results if r["method"] == "community.docker loop"}
    print("| hosts | method | median (s) | runs (s) | ratio to xargs -P | loop / method |")
    print("| ---: | --- | ---: | --- | ---: | ---: |")
    for r in results:
        print("| %d | %s | %.2f | %s | %.2f | %s |" % (
            r["hosts"], r["method"], r["median_s"], " ".join("%.2f" % t for t in r["runs"]),
            r["ratio_to_xargs"] or 0, "%.1fx" % (loop[r["hosts"]] / r["median_s"]) if r["hosts"] in loop else "-"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
