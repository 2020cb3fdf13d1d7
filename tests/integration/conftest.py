"""Fixtures for tests against the real daemon and registries.

The test ground comes from ``scripts/testenv.sh``. When ``PULLER_TESTENV``
points at a running one (``.ci/run`` and ``scripts/test.sh`` start it), it is
used as is; otherwise the session starts its own and tears it down. A test
ground that cannot start is an error, never a skip.
"""

import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest
import requests

from faultproxy import FaultProxy, Rules

ROOT = Path(__file__).resolve().parents[2]
TESTENV = ROOT / "scripts" / "testenv.sh"


def _read_env(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


class TestGround:
    def __init__(self, env):
        self.env = env
        self.dir = env["PULLER_TESTENV"]
        self.socket = env["PULLER_TEST_DOCKER_SOCKET"]
        self.registry = env["PULLER_TEST_REGISTRY"]
        self.registry_port = int(env["PULLER_TEST_REGISTRY_PORT"])
        self.auth_registry = env["PULLER_TEST_AUTH_REGISTRY"]
        self.user = env["PULLER_TEST_REGISTRY_USER"]
        self.password = env["PULLER_TEST_REGISTRY_PASSWORD"]
        self.fixture_count = int(env["PULLER_TEST_FIXTURE_COUNT"])

    def image(self, n, registry=None):
        return "%s/fixture/img-%02d" % (registry or self.registry, n)

    def private_image(self, n):
        return "%s/private/img-%02d" % (self.auth_registry, n)

    def client(self):
        return docker.APIClient(base_url="unix://" + self.socket, version="auto")

    def remove_all_images(self):
        """Empty the image store (what `docker image prune -a` does), build stages included."""
        client = self.client()
        client.prune_images(filters={"dangling": False})
        client.close()

    def dockerd(self, action):
        subprocess.run(["bash", str(TESTENV), "dockerd-" + action, self.dir], check=True,
                       stdout=subprocess.DEVNULL)


class LeakGuard:
    """Every secret any test uses, and everything the servers said.

    At the end of the session, no server log, recorded response body or final
    ``/debug/dump`` may contain any of the secrets.
    """

    def __init__(self):
        self.secrets = set()
        self.servers = []

    def check(self):
        leaks = []
        for server in self.servers:
            texts = [("log", server.log())] + [("response", body) for body in server.bodies]
            for where, text in texts:
                leaks += ["%s of %s: %s..." % (where, server.url, s[:4]) for s in self.secrets if s in text]
        return leaks


LEAKS = LeakGuard()


@pytest.fixture(scope="session")
def ground():
    given = os.environ.get("PULLER_TESTENV")
    if given and Path(given, "env.sh").exists():
        env_dir, own = given, False
    else:
        env_dir, own = tempfile.mkdtemp(prefix="puller-testenv-"), True
        os.rmdir(env_dir)
        subprocess.run(["bash", str(TESTENV), "up", env_dir], check=True, stdout=subprocess.DEVNULL)
    ground = TestGround(_read_env(Path(env_dir, "env.sh")))
    LEAKS.secrets.add(ground.password)
    try:
        yield ground
    finally:
        if own:
            subprocess.run(["bash", str(TESTENV), "down", env_dir], check=False)


@pytest.fixture(scope="session", autouse=True)
def no_secret_leaks():
    """Fails the session's last teardown if any server ever showed a secret."""
    yield LEAKS
    leaks = LEAKS.check()
    assert not leaks, "secrets leaked: %s" % leaks


@pytest.fixture
def clean(ground):
    """An empty image store before the test (and after, for the next one)."""
    ground.remove_all_images()
    yield ground
    ground.remove_all_images()


@pytest.fixture
def proxy(ground):
    """A fault-injecting proxy in front of the open registry."""
    p = FaultProxy(ground.registry_port)
    yield p
    p.close()


def report(ground, line):
    """Keep a measured figure for the end of the run (scripts/test.sh prints them)."""
    with open(Path(ground.dir, "report.txt"), "a") as fh:
        fh.write(line + "\n")


def fixture_set(ground, name, count, layers, kib):
    """``NAME/img-01`` ... of the open registry (``testenv.sh fixtures``), built and pushed once a test ground."""
    url = "http://%s/v2/%s/img-%02d/manifests/latest" % (ground.registry, name, count)
    accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
    if requests.head(url, headers={"Accept": accept}, timeout=10).status_code != 200:
        subprocess.run(["bash", str(TESTENV), "fixtures", ground.dir, name, str(count), str(layers), str(kib)],
                       check=True, stdout=subprocess.DEVNULL)
    return ["%s/img-%02d" % (name, n) for n in range(1, count + 1)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``puller serve`` as a real subprocess, logging to a file we can search."""

    def __init__(self, ground, tmp_path, args=(), env=None, listen_host="127.0.0.1", nofile=None, tls=None,
                 port=None, default_state_dir=False, runtime="docker"):
        # default_state_dir: no --state-dir, so the server picks its own (set XDG_STATE_HOME in env)
        # runtime="cri": the test ground's containerd (its CRI endpoint) instead of its dockerd
        self.port = port or free_port()
        # tls: {"verify": CA file, "cert": (client cert, key) or None} for a server started with --https-*
        self.tls = tls
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.log_path = tmp_path / ("server-%d.log" % self.port)
        self.bodies = []
        self.token = (env or {}).get("PULLER_TOKEN")
        LEAKS.servers.append(self)
        full_env = dict(os.environ)
        full_env.update(env or {})
        daemon = ["--runtime-endpoint", ground.env["PULLER_TEST_CRI_ENDPOINT"]] if runtime == "cri" else [
            "--docker-socket", ground.socket]
        cmd = [sys.executable, "-m", "puller", "serve", "--listen", "%s:%d" % (listen_host, self.port)] + daemon + [
            "--backoff-base", "50ms", "--drain-timeout", "30s"]
        if "--state-dir" not in args and not default_state_dir:
            self.state_dir = tmp_path / ("state-%d" % self.port)
            cmd += ["--state-dir", str(self.state_dir)]
        cmd += list(args)
        self.cmd = cmd
        self._log = open(self.log_path, "wb")

        def limit_files():  # (soft, hard) open-file limit of the server process
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                     preexec_fn=limit_files if nofile is not None else None)
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(self.url + "/ping", timeout=1, **self.tls_args()).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + self.log())
            time.sleep(0.1)

    def tls_args(self):
        return {"verify": self.tls["verify"], "cert": self.tls.get("cert")} if self.tls else {}

    def log(self):
        return self.log_path.read_text(errors="replace")

    def pull(self, body, **kwargs):
        resp = requests.post(self.url + "/pull", json=body, timeout=kwargs.pop("timeout", 120), **kwargs)
        self.bodies.append(resp.text)
        return resp

    def pull_later(self, body):
        """Start a /pull in a thread; returns a Future of its response."""
        pool = ThreadPoolExecutor(1)
        future = pool.submit(self.pull, body)
        pool.shutdown(wait=False)
        return future

    def rss_kib(self):
        for line in Path("/proc/%d/status" % self.proc.pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc.poll() is None:
            try:  # the last word of /debug/dump goes through the leak check too
                headers = {"Authorization": "Bearer " + self.token} if self.token else {}
                dump = requests.get(self.url + "/debug/dump", headers=headers, timeout=5, **self.tls_args())
                self.bodies.append(dump.text)
            except requests.RequestException:
                pass
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(ground, tmp_path):
    started = []

    def start(*args, **kwargs):
        server = ServerProcess(ground, tmp_path, args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()


__all__ = ["Rules"]
