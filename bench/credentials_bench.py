"""The host's credential helpers misbehaving, against a real server. Prints a table.

    PULLER_TESTENV=/tmp/pt-x .venv/bin/python bench/credentials_bench.py

- hang: a ``docker-credential-*`` helper on PATH that never answers (it runs a
  ``sleep`` of its own); ``/pull`` of an image of its registry and one of the
  open registry with ``timeout: 8s`` (concurrency 1: the second image is
  pulled after the first has ended): time to the answer, the rows; then a job
  (no timeout) cancelled with ``DELETE`` after 1 s: how long the DELETE took,
  the job's status, and whether the helper (or its child) still runs 3 s later.
- output: helpers answering invalid JSON, ``{}`` and 50 MB; a ``config.json``
  that is a list: the HTTP status of ``/pull`` and the failed row's errmsg.
- sighup: a server without ``--credentials-file`` sent SIGHUP: alive 1 s later?
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import free_port, print_rows, read_env, test_ground, wait_for_ping

HELPER = "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\n%s\n"


class Server:
    def __init__(self, env, tmp, extra_env, *args):
        port = free_port()
        self.url = "http://127.0.0.1:%d" % port
        self.log = open(Path(tmp, "server-%d.log" % port), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % port, "--docker-socket",
             env["PULLER_TEST_DOCKER_SOCKET"], "--state-dir", tempfile.mkdtemp(dir=tmp)] + list(args),
            env=dict(os.environ, **extra_env), stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_ping(self.url, tries=200)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def timed(method, url, **kwargs):
    """``(seconds, response or None)``; None when no answer came within ``timeout``."""
    t0 = time.monotonic()
    try:
        resp = requests.request(method, url, **kwargs)
    except requests.RequestException:
        resp = None
    return time.monotonic() - t0, resp


def helper_env(tmp, registry, name, body, config=None):
    bindir = Path(tmp, "bin")
    bindir.mkdir(exist_ok=True)
    path = bindir / ("docker-credential-" + name)
    path.write_text(HELPER % body)
    path.chmod(0o755)
    conf = Path(tmp, "config-" + name)
    conf.mkdir(exist_ok=True)
    (conf / "config.json").write_text(json.dumps(config if config is not None else {"credHelpers": {registry: name}}))
    return {"DOCKER_CONFIG": str(conf), "PATH": str(bindir) + os.pathsep + os.environ["PATH"]}


def running(marker):
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def bench_hang(env, tmp, images, rows):
    marker = "3600.%d" % os.getpid()  # a sleep nobody else runs
    server = Server(env, tmp, helper_env(tmp, env["PULLER_TEST_AUTH_REGISTRY"], "benchhang", "sleep " + marker),
                    "--host-credentials")
    try:
        took, resp = timed("POST", server.url + "/pull", json={"images": images, "timeout": "8s"}, timeout=60)
        if resp is None:
            rows.append(("hang: /pull timeout 8s answers after", "none within %.0f s" % took, ""))
        else:
            try:
                body = resp.json()
                note = "; ".join("%s: %s %s" % (r["image"].rsplit("/", 1)[-1], r["status"], r["errmsg"][:90])
                                 for r in body.get("failure", []) + body.get("success", [])) or resp.text[:120]
            except ValueError:
                note = resp.text[:120]
            rows.append(("hang: /pull timeout 8s answers after", "%.1f s (HTTP %d)" % (took, resp.status_code),
                         note))
        time.sleep(1)
        rows.append(("hang: helpers left after the answer", str(len(running(marker))), "pgrep -f 'sleep %s'" % marker))
        job = requests.post(server.url + "/jobs", json={"images": images[:1]}, timeout=30).json()
        time.sleep(1)
        took, cancelled = timed("DELETE", server.url + "/jobs/" + job["id"], timeout=60)
        status = cancelled.json().get("status") if cancelled is not None else "no answer"
        rows.append(("hang: DELETE of the job returns after", "%.1f s" % took, "job status: %s" % status))
        time.sleep(3)
        rows.append(("hang: helpers left 3 s after DELETE", str(len(running(marker))),
                     "pgrep -f 'sleep %s'" % marker))
    finally:
        server.stop()
        for pid in running(marker):  # ours: the marker is this process's id
            os.kill(pid, signal.SIGKILL)


def bench_output(env, tmp, images, rows):
    registry = env["PULLER_TEST_AUTH_REGISTRY"]
    cases = [("not JSON", "benchnotjson", "echo 'this is not json'", None),
             ("{}", "benchempty", "echo '{}'", None),
             ("50 MB", "benchhuge", "head -c 52428800 /dev/zero | tr '\\0' 'x'", None),
             ("config.json is a list", "benchlist", "true", ["not", "an", "object"])]
    for label, name, body, config in cases:
        server = Server(env, tmp, helper_env(tmp, registry, name, body, config), "--host-credentials")
        try:
            took, resp = timed("POST", server.url + "/pull", json={"images": images}, timeout=120)
            if resp is None:
                rows.append(("output: %s" % label, "no answer within %.0f s" % took, ""))
                continue
            try:
                data = resp.json()
                note = "; ".join(r["errmsg"][:110] for r in data.get("failure", [])) or json.dumps(data)[:110]
                pulled = len(data.get("success", []))
            except ValueError:
                note, pulled = resp.text[:110], 0
            rows.append(("output: %s" % label, "HTTP %d, %d pulled, %.1f s" % (resp.status_code, pulled, took),
                         note.replace("|", "/")))
        finally:
            server.stop()


def bench_sighup(env, tmp, rows):
    server = Server(env, tmp, {})
    try:
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        alive = server.proc.poll() is None
        rows.append(("sighup without --credentials-file", "alive" if alive else "dead (rc %s)" % server.proc.returncode,
                     ""))
    finally:
        server.stop()


def main():
    rows = []
    with test_ground() as env_dir:
        env = read_env(Path(env_dir, "env.sh"))
        private = "%s/private/img-01" % env["PULLER_TEST_AUTH_REGISTRY"]
        public = "%s/fixture/img-01" % env["PULLER_TEST_REGISTRY"]
        with tempfile.TemporaryDirectory(prefix="puller-creds-bench-") as tmp:
            bench_hang(env, tmp, [private, public], rows)
            bench_output(env, tmp, [private, public], rows)
            bench_sighup(env, tmp, rows)
    print_rows(rows)


if __name__ == "__main__":
    main()
