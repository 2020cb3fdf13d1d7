"""The server on an open network: slow TLS handshakes, request mirrors outside
the allow-list, a mirror that hangs mid-blob. Prints a table.

    PULLER_TESTENV=/tmp/pt-x .venv/bin/python bench/open_network_bench.py [--only tls,allow,stall]

- tls: 200 ClientHellos trickled one byte every 2 s at a server with the
  default ``--header-timeout`` (10 s): how many are still open after 26 s;
  then, under an open-file limit of 1024, 1 100 of them and a fresh HTTPS
  ``/ping``.
- allow: ``--allow-registry`` admitting the origin only, ``--allow-request-mirrors``,
  and a request naming a mirror on another registry: the answer, and the
  requests that mirror saw.
- stall: a mirror whose first blob answer stops half-way and hangs; the
  default ``--stall-timeout`` (2 min) and a 30 s request timeout: time to the
  result, its status, and what the row says about the mirror.
"""

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import Bench, free_port, print_rows, test_ground, ROOT

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from faultproxy import FaultProxy, Rules  # noqa: E402  pylint: disable=wrong-import-position
from mirrors import Registry, layer_digests  # noqa: E402  pylint: disable=wrong-import-position
from slowtls import Trickle  # noqa: E402  pylint: disable=wrong-import-position


def make_certs(d):
    def ssl_(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)

    ssl_("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=bench ca")
    Path(d, "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ssl_("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
         "/CN=127.0.0.1")
    ssl_("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
         "server.pem", "-days", "2", "-extfile", "server.ext")
    return Path(d)


class Served:
    """``puller serve`` as a subprocess, optionally over HTTPS and under a file limit."""

    def __init__(self, bench, *args, certs=None, nofile=None):
        self.port = free_port()
        self.verify = str(certs / "ca.pem") if certs else True
        self.url = "%s://127.0.0.1:%d" % ("https" if certs else "http", self.port)
        extra = ["--https-cert", str(certs / "server.pem"), "--https-key", str(certs / "server.key")] if certs else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % self.port, "--docker-socket",
             bench.socket, "--log-level", "WARNING", "--state-dir", tempfile.mkdtemp(prefix="puller-bench-state-")]
            + extra + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None)
        for _i in range(200):
            try:
                requests.get(self.url + "/ping", timeout=1, verify=self.verify)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("puller serve did not start")

    def fds(self):
        return len(list(Path("/proc/%d/fd" % self.proc.pid).iterdir()))

    def ping(self, timeout=5):
        t0 = time.monotonic()
        try:
            ok = requests.get(self.url + "/ping", timeout=timeout, verify=self.verify).text == "OK"
        except requests.RequestException as exc:
            return "failed (%s) after %.1f s" % (type(exc).__name__, time.monotonic() - t0)
        return "%s in %.0f ms" % ("OK" if ok else "wrong answer", (time.monotonic() - t0) * 1000)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def bench_tls(bench, rows):
    certs = make_certs(tempfile.mkdtemp(prefix="puller-bench-certs-"))
    served = Served(bench, certs=certs)
    trickle = Trickle(served.port, 200)
    try:
        counts = trickle.run(26)
        rows.append(("TLS: 200 trickled ClientHellos, open after 26 s", "%d" % counts[-1][1],
                     "header timeout 10 s; first step with none open: %s"
                     % next(("%.0f s" % t for t, n in counts if n == 0), "never")))
    finally:
        trickle.close()
        served.stop()
    served = Served(bench, certs=certs, nofile=(1024, 1024))
    trickle = Trickle(served.port, 1100)
    try:
        trickle.run(4)
        rows.append(("TLS: 1 100 trickled at ulimit -n 1024, fresh HTTPS /ping", served.ping(),
                     "server fds: %d, trickled still open: %d" % (served.fds(), trickle.open())))
    finally:
        trickle.close()
        served.stop()


def bench_allow(bench, rows, workdir):
    registry_port = int(bench.env["PULLER_TEST_REGISTRY_PORT"])
    outside = FaultProxy(registry_port, preserve_headers=True)  # an unadmitted "mirror", counting
    served = Served(bench, "--allow-registry", bench.registry, "--allow-request-mirrors")
    try:
        outside.reset_stats(Rules(pattern=re.compile(".*")))
        bench.clean()
        body = {"images": ["%s/fixture/img-01" % bench.registry], "mirrors": {bench.registry: [outside.address]}}
        resp = requests.post(served.url + "/pull", json=body, timeout=120)
        rows.append(("allow-list: request mirror outside it", "HTTP %d" % resp.status_code,
                     "requests the mirror saw: %d (%d manifest); %s" % (
                         outside.matched, len(outside.manifest_requests), resp.text[:120])))
    finally:
        served.stop()
        outside.close()


def bench_stall(bench, rows, workdir):
    registry_port = int(bench.env["PULLER_TEST_REGISTRY_PORT"])
    origin = FaultProxy(registry_port, preserve_headers=True)
    upstream = Registry(workdir, remote="http://127.0.0.1:%d" % origin.port)
    hanging = FaultProxy(upstream.port, preserve_headers=True)  # the mirror, behind a proxy that hangs a blob
    served = Served(bench, "--mirror", "%s=%s" % (origin.address, hanging.address))
    try:
        layer = layer_digests(bench.registry, "fixture/img-03")[0]
        hanging.reset_stats(Rules(pattern=re.compile("^/v2/.+/blobs/%s$" % layer), hang_body_first=100, hang=300))
        bench.clean()
        image = "%s/fixture/img-03" % origin.address
        t0 = time.monotonic()
        resp = requests.post(served.url + "/pull", json={"images": [image], "timeout": "30s"}, timeout=120)
        took = time.monotonic() - t0
        body = resp.json()
        (row,) = body["success"] + body["failure"]
        rows.append(("stalled mirror: time to result", "%.1f s" % took, "HTTP %d, status %s, source %s" % (
            resp.status_code, row["status"], row.get("source", "-"))))
        rows.append(("stalled mirror: the row's mirrors", str(row.get("mirrors", [])), row.get("errmsg") or "-"))
    finally:
        served.stop()
        hanging.close()
        upstream.stop()
        origin.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="tls,allow,stall")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    with test_ground() as env_dir:
        bench = Bench(env_dir)
        workdir = tempfile.mkdtemp(prefix="puller-bench-mirrors-")
        for name in args.only.split(","):
            {"tls": lambda: bench_tls(bench, rows), "allow": lambda: bench_allow(bench, rows, workdir),
             "stall": lambda: bench_stall(bench, rows, workdir)}[name]()
    print_rows(rows, args.json)


if __name__ == "__main__":
    main()
