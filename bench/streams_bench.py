"""Event streams and the status page against big jobs; print one table.

    .venv/bin/python bench/streams_bench.py                     # this checkout
    git archive c8c2f01 puller plugins/module_utils | tar -x -C /tmp/before
    .venv/bin/python bench/streams_bench.py --tree /tmp/before  # another source tree

- slow reader: ``GET /jobs/{id}/events`` read by ``http.client`` (default
  socket buffers, loopback) at ``--rate`` events a second from a dry run of
  ``--images`` images (one ``done`` event each): events received, whether
  the report arrived, how the stream ended, tracebacks in the server's log;
- stopped reader: the stream of a 12 000-image dry run (more than the kernel
  buffers of a connection), read 4 KiB and then not at all: how long
  the server waits before closing it, and what it logs;
- status page: headless Chromium (Debian's chromium and chromedriver) on a
  real pull of 1 000 images (the fixtures' manifests under 1 000 tags, so
  no layers move; a dry run ends before the page has seen it), its requests counted in the server's access log:
  full-job fetches, event streams, list fetches, bytes, and how long after
  the job's end the page still kept the server busy.

Every figure comes from the server's own log (``--log-level INFO``).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import docker
import requests

from bench import free_port, print_rows, read_env, test_ground, wait_for_ping

CHROMEDRIVER = "/usr/bin/chromedriver"
ACCESS = re.compile(r'^(\S+ \S+) INFO puller\.server: .*"GET (\S+) HTTP/1\.1" (\d+) (\d+|-)', re.M)


class Server:
    def __init__(self, env, tree=None, *extra):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = Path(tempfile.mkdtemp(prefix="puller-streams-bench-"), "server.log")
        env_vars = dict(os.environ, PYTHONPATH=str(tree)) if tree else None
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % self.port,
             "--docker-socket", env["PULLER_TEST_DOCKER_SOCKET"], "--log-level", "INFO",
             "--state-dir", str(self.log_path.parent / "state"), "--max-images", "20000",
             "--max-body", str(8 << 20)] + list(extra),
            cwd=tree, env=env_vars, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_ping(self.url, log=self.log)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def tracebacks(self):
        return self.log().count("Traceback")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self._log.close()


def dry_run(env, server, count):
    body = {"dry_run": True, "concurrency": 20,
            "images": ["%s/fixture/img-01:t%05d" % (env["PULLER_TEST_REGISTRY"], n) for n in range(count)]}
    resp = requests.post(server.url + "/jobs", json=body, timeout=60)
    assert resp.status_code == 202, resp.text[:300]
    return resp.json()["id"]


def slow_reader(env, tree, images, rate):
    server = Server(env, tree)
    try:
        job_id = dry_run(env, server, images)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3600)
        conn.request("GET", "/jobs/%s/events" % job_id)
        resp = conn.getresponse()
        t0, events, report, ended = time.monotonic(), 0, False, "the server ended the stream"
        try:
            for line in iter(resp.readline, b""):
                event = json.loads(line)
                events += 1
                report = report or event["type"] == "report"
                time.sleep(1.0 / rate)
        except (http.client.HTTPException, OSError) as exc:
            ended = "cut: %s" % type(exc).__name__
        took = time.monotonic() - t0
        closed = re.findall(r"closed the answer to .*", server.log())
        return [("slow reader, %g events/s, dry run of %d images (%d events)" % (rate, images, images + 3),
                 "%d events, report %s, %.0f s" % (events, "received" if report else "missing", took),
                 "%s; %d traceback(s) in the log%s" % (ended, server.tracebacks(),
                                                       "; " + closed[0] if closed else ""))]
    finally:
        server.stop()


def stopped_reader(env, tree, images=12000):
    server = Server(env, tree)
    try:
        job_id = dry_run(env, server, images)
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /jobs/%s/events HTTP/1.1\r\nHost: bench\r\n\r\n" % job_id.encode())
        sock.recv(4096)
        t0 = time.monotonic()
        pattern = re.compile(r'"GET /jobs/%s/events HTTP' % job_id)
        while not pattern.search(server.log()) and time.monotonic() - t0 < 900:
            time.sleep(0.5)
        took = time.monotonic() - t0
        sock.close()
        lines = [line for line in server.log().splitlines() if job_id in line or "Traceback" in line
                 or "failed with" in line]
        return [("stopped reader (read 4 KiB, then nothing), dry run of %d images" % images,
                 "closed after %.0f s" % took,
                 "%d traceback(s), %d log line(s) about it" % (server.tracebacks(), len(lines) - 1))]
    finally:
        server.stop()


def _browser():
    from selenium import webdriver  # only this part needs Selenium
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--window-size=1200,900",
                "--user-data-dir=%s" % tempfile.mkdtemp(prefix="puller-bench-chromium-")):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _when(stamp):
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def tags(env, count, fixtures=24):
    """``count`` references: the fixtures' manifests put again under new tags (no layers move)."""
    refs = []
    for n in range(count):
        repo, tag = "fixture/img-%02d" % (n % fixtures + 1), "page%04d" % n
        base = "http://%s/v2/%s/manifests/" % (env["PULLER_TEST_REGISTRY"], repo)
        if requests.head(base + tag, headers={"Accept": MANIFEST}, timeout=10).status_code != 200:
            manifest = requests.get(base + "latest", headers={"Accept": MANIFEST}, timeout=10)
            put = requests.put(base + tag, data=manifest.content, headers={"Content-Type": MANIFEST}, timeout=10)
            assert put.status_code == 201, put.text
        refs.append("%s/%s:%s" % (env["PULLER_TEST_REGISTRY"], repo, tag))
    return refs


def _prune(env):
    client = docker.APIClient(base_url="unix://" + env["PULLER_TEST_DOCKER_SOCKET"], version="auto", timeout=600)
    client.prune_images(filters={"dangling": False})
    client.close()


def status_page(env, tree, images=1000):
    refs = tags(env, images)
    _prune(env)
    server = Server(env, tree)
    browser = _browser()
    try:
        browser.get(server.url + "/")
        time.sleep(1)
        resp = requests.post(server.url + "/jobs", json={"concurrency": 20, "images": refs}, timeout=60)
        job_id = resp.json()["id"]
        while True:  # the bench's own look at the job: GET /jobs?limit=1, not counted below
            job = requests.get(server.url + "/jobs?limit=1", timeout=60).json()["jobs"][0]
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.5)
        finished = datetime.fromisoformat(job["finished"]).timestamp()
        quiet_since, seen = time.monotonic(), 0
        while time.monotonic() - quiet_since < 6 and time.time() - finished < 600:
            count = len([m for m in ACCESS.findall(server.log()) if job_id in m[1]])
            if count != seen:
                seen, quiet_since = count, time.monotonic()
            time.sleep(0.5)
        kinds, sizes, last = {}, {}, 0.0
        for stamp, path, _status, size in ACCESS.findall(server.log()):
            kind = ("event stream" if path == "/jobs/%s/events" % job_id else
                    "full-job GET" if path == "/jobs/" + job_id else "list GET" if path == "/jobs?limit=20" else None)
            if kind is None:
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            sizes[kind] = sizes.get(kind, 0) + (int(size) if size != "-" else 0)
            if kind != "list GET":
                last = max(last, _when(stamp))
        busy = max(0.0, last - finished)
        return [("status page, %d-image job" % images,
                 "%s; %.1f MB" % (", ".join("%d %s" % (kinds.get(k, 0), k) for k in (
                     "full-job GET", "event stream", "list GET")), sum(sizes.values()) / 1e6),
                 "job requests went on %.1f s after the job ended" % busy)]
    finally:
        browser.quit()
        server.stop()
        _prune(env)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--tree", help="another source tree (from git archive) to measure instead of this one")
    parser.add_argument("--images", type=int, default=20000, help="images of the slow reader's dry run")
    parser.add_argument("--rate", type=float, default=10.0, help="the slow reader's events per second")
    parser.add_argument("--only", default="slow,stopped,page", help="comma-separated: slow, stopped, page")
    args = parser.parse_args()
    tree = os.path.abspath(args.tree) if args.tree else None
    if tree and not Path(tree, "puller", "core").exists():
        # The package maps puller.core to the collection's module_utils; a bare tree needs the link.
        os.symlink(os.path.join("..", "plugins", "module_utils"), os.path.join(tree, "puller", "core"))
    only = set(args.only.split(","))
    rows = []
    with test_ground() as env_dir:
        env = read_env(Path(env_dir, "env.sh"))
        if "page" in only:
            rows += status_page(env, tree)
        if "stopped" in only:
            rows += stopped_reader(env, tree)
        if "slow" in only:
            rows += slow_reader(env, tree, args.images, args.rate)
    print_rows(rows, args.json)


if __name__ == "__main__":
    main()
