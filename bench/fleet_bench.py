"""The fleet: N hosts pull one release, directly or through a mirror; wall time and origin bytes.

    bench/run.sh fleet            # N = 1..4 (--hosts 1,2,3,4)

The release is the few-large set (12 images, 4 x 8 MiB layers and an 8 MiB
shared base each). The origin sits behind the simulated slow link (200 Mbit/s,
10 ms each way, ``slowlink.py``) with a counting proxy in front of the
registry; the mirror is a ``docker-registry`` pull-through cache on loopback,
started cold for every N. Hosts are the test ground's simulated hosts (one
dockerd each), driven by the engine in-process.

- direct: the N hosts pull from the origin at once;
- mirror: one host warms the mirror, then the other N-1 pull through it at once;
- preheat + fan-out by digest: ``puller preheat`` copies the release into a
  cold plain site registry (skopeo, byte for byte), then the N hosts pull by
  the digests it resolved through the site at once, asking the origin nothing.

Goals: origin bytes flat in N through the mirror (<= the mirror's fill plus
0.2 copy), N copies direct; at N = 4 the mirror's wall time <= 0.6 x direct.
Preheat + fan-out: one copy from the origin and one manifest request per
image whatever N, none of them by the hosts.
"""

import argparse
import subprocess
import sys
import tempfile
import threading
import time

import docker
import matplotlib

from bench import PRESETS, ROOT, TESTENV, Bench, print_rows, test_ground
from slowlink import SlowLink

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from faultproxy import FaultProxy  # noqa: E402  pylint: disable=wrong-import-position
from mirrors import Registry  # noqa: E402  pylint: disable=wrong-import-position
from puller.core._engine import Engine, EngineConfig  # noqa: E402  pylint: disable=wrong-import-position
from puller.core._preheat import Preheaters, parse_preheat_request  # noqa: E402  pylint: disable=wrong-import-position
from puller.core._request import parse_pull_request  # noqa: E402  pylint: disable=wrong-import-position

MIB = 2 ** 20


def pull_on(sockets, images, mirrors):
    """Each host pulls ``images`` at once; raises if any image failed."""
    failures = []

    def one(socket):
        result = Engine(EngineConfig(docker_host=socket)).pull(
            parse_pull_request({"images": images, "concurrency": 4}, mirrors=mirrors))
        failures.extend(result.failure)

    threads = [threading.Thread(target=one, args=(s,)) for s in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(failures[:2])


def empty(sockets):
    for socket in sockets:
        docker.APIClient(base_url="unix://" + socket, version="auto").prune_images(filters={"dangling": False})


def measure(bench, counts, workdir):
    name, count, layers, kib, shared, _n = PRESETS["few-large"]
    bench.ensure_set(name, count, layers, kib, shared)
    sockets = subprocess.run(["bash", str(TESTENV), "hosts", bench.env_dir, str(max(counts))], check=True,
                             capture_output=True, text=True).stdout.split()
    counter = FaultProxy(int(bench.registry.rsplit(":", 1)[1]), preserve_headers=True)
    link = SlowLink(counter.port, 0.010, 200.0)
    images = ["%s/%s/img-%02d:latest" % (link.address, name, n) for n in range(1, count + 1)]
    results = []
    try:
        for n in counts:
            hosts = sockets[:n]
            empty(hosts)
            counter.reset_stats()
            t0 = time.perf_counter()
            pull_on(hosts, images, {})
            results.append({"hosts": n, "method": "direct", "seconds": time.perf_counter() - t0,
                            "origin_mib": counter.bytes_out / MIB})
            empty(hosts)
            mirror = Registry(workdir, remote="http://127.0.0.1:%d" % link.port)
            try:
                mirrors = {link.address: (mirror.address,)}
                counter.reset_stats()
                t0 = time.perf_counter()
                pull_on(hosts[:1], images, mirrors)
                fill = counter.bytes_out / MIB
                pull_on(hosts[1:], images, mirrors)
                results.append({"hosts": n, "method": "mirror (warm one, fan out)",
                                "seconds": time.perf_counter() - t0, "origin_mib": counter.bytes_out / MIB,
                                "fill_mib": fill})
            finally:
                mirror.stop()
            empty(hosts)
            results.append(preheat_then_fan_out(hosts, images, link, counter, workdir))
            print("N=%d done" % n, file=sys.stderr)
    finally:
        link.close()
        counter.close()
    return results


def preheat_then_fan_out(hosts, images, link, counter, workdir):
    """A cold site registry filled by a preheat, then every host pulls by the digests it resolved."""
    site = Registry(workdir)
    try:
        counter.reset_stats()
        t0 = time.perf_counter()
        body = {"images": images, "concurrency": 4, "preheat": {"to": site.address}}
        _site, request = parse_preheat_request(body)
        report = Preheaters(EngineConfig()).engine(site.address).pull(request)
        if report.failure:
            raise RuntimeError(report.failure[:2])
        fill, fill_requests = counter.bytes_out / MIB, len(counter.manifest_requests)
        pull_on(hosts, report.success, {link.address: (site.address,)})
        return {"hosts": len(hosts), "method": "preheat + fan-out by digest", "seconds": time.perf_counter() - t0,
                "origin_mib": counter.bytes_out / MIB, "fill_mib": fill,
                "origin_manifests": len(counter.manifest_requests), "fill_manifests": fill_requests}
    finally:
        site.stop()


def chart(results, path):
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for method in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == method]
        left.plot([r["hosts"] for r in rows], [r["seconds"] for r in rows], marker="o", label=method)
        right.plot([r["hosts"] for r in rows], [r["origin_mib"] for r in rows], marker="o", label=method)
    left.set_xlabel("hosts")
    left.set_ylabel("wall time (s)")
    right.set_xlabel("hosts")
    right.set_ylabel("bytes from the origin (MiB)")
    for ax in (left, right):
        ax.set_xticks(sorted(set(r["hosts"] for r in results)))
        ax.legend(fontsize=8)
    fig.suptitle("a release to N hosts over a 200 Mbit/s link: direct, a mirror, a preheated site", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def rows_of(results):
    direct = {r["hosts"]: r for r in results if r["method"] == "direct"}
    one_copy = direct[min(direct)]["origin_mib"] / min(direct)
    rows = []
    for r in results:
        note = "%.2f copies" % (r["origin_mib"] / one_copy)
        if r["method"] != "direct":
            note += "; fill %.2f copies, then %.2f for %d %shost(s); %.2f x direct's time" % (
                r["fill_mib"] / one_copy, (r["origin_mib"] - r["fill_mib"]) / one_copy,
                r["hosts"] - (0 if "origin_manifests" in r else 1), "" if "origin_manifests" in r else "more ",
                r["seconds"] / direct[r["hosts"]]["seconds"])
        if "origin_manifests" in r:
            note += "; %d origin manifest requests (%d by the hosts)" % (
                r["origin_manifests"], r["origin_manifests"] - r["fill_manifests"])
        rows.append(("%d host(s), %s" % (r["hosts"], r["method"]), "%.1f s, %.0f MiB from the origin" % (
            r["seconds"], r["origin_mib"]), note))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--hosts", default="1,2,3,4")
    args = parser.parse_args()
    counts = [int(n) for n in args.hosts.split(",")]
    with test_ground() as env_dir:
        results = measure(Bench(env_dir), counts, tempfile.mkdtemp(prefix="puller-fleet-"))
    chart(results, ROOT / "bench" / "fleet.png")
    print_rows(rows_of(results), args.json)


if __name__ == "__main__":
    main()
