"""A rollout over three servers, each on a simulated host of its own, watched
from a real Prometheus that scrapes their ``/metrics`` every second: the
fleet's progress, failed images by host, origin versus mirror bytes, and
every expression of the Grafana dashboard in ``docs/``."""

import json
import math
import re
import shutil
import subprocess
import time

import docker
import pytest
import requests

from conftest import ROOT, TESTENV, free_port, report
from faultproxy import FaultProxy
from mirrors import Registry

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = ROOT / "docs" / "grafana-rollout.json"
BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]+$")
IMAGES = 12  # per host, of the test ground's fixtures (3 layers of 64 KiB each)
RATE = 160 * 1024  # bytes a second per blob download: a layer takes 0.4 s, a host's job seconds
PROGRESS = "sum(puller_job_images_progress) / sum(puller_job_images_desired)"
BYTES = "sum(puller_job_bytes_done) / sum(puller_job_bytes_total)"


class _Trickle:
    """A socket file that writes in small pieces at ``rate`` bytes a second, so that the daemon sees a
    64 KiB layer arrive over a fraction of a second and reports its bytes as they come."""

    PIECE = 4096

    def __init__(self, wfile, rate):
        self._wfile, self._rate = wfile, rate

    def write(self, data):
        for i in range(0, len(data), self.PIECE):
            piece = data[i:i + self.PIECE]
            self._wfile.write(piece)
            time.sleep(len(piece) / self._rate)

    def __getattr__(self, name):
        return getattr(self._wfile, name)


class TrickleProxy(FaultProxy):
    """The open registry behind a proxy that sends blobs slowly (every header forwarded, so that a
    pull-through cache behind it gets the digests the registry has)."""

    def __init__(self, upstream_port, rate):
        super().__init__(upstream_port, preserve_headers=True)
        self.rate = rate

    def _forward(self, h, body, hang=0.0):
        if BLOB_PATH.match(h.path.split("?", 1)[0]):
            h.wfile = _Trickle(h.wfile, self.rate)
        return super()._forward(h, body, hang)


class Prometheus:
    """``prometheus`` on a loopback port with its own storage, scraping ``targets`` every second."""

    def __init__(self, workdir, targets):
        if not shutil.which(PROMETHEUS):
            pytest.fail("prometheus is not installed (%s): scripts/bootstrap.sh installs Debian's package "
                        "`prometheus`" % PROMETHEUS)
        self.dir = workdir / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        statics = "".join("      - targets: ['%s']\n        labels: {host: '%s'}\n" % (target, host)
                          for host, target in targets)
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: puller\n    static_configs:\n" + statics)
        self._log = open(self.dir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=%s" % (self.dir / "prometheus.yml"),
             "--storage.tsdb.path=%s" % (self.dir / "data"), "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._wait(lambda: requests.get(self.url + "/-/ready", timeout=1).status_code == 200, 30, "ready")
        self._wait(lambda: self._targets_up() == len(targets), 30, "scraping its %d targets" % len(targets))

    def _wait(self, predicate, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if predicate():
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("prometheus is not %s:\n%s" % (what, (self.dir / "prometheus.log").read_text()[-3000:]))

    def _targets_up(self):
        targets = requests.get(self.url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return sum(1 for t in targets if t["health"] == "up")

    def query(self, expr):
        """The instant vector of ``expr`` now: ``{labels as a tuple of (name, value): value}``."""
        resp = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        assert resp.status_code == 200, (expr, resp.text)
        body = resp.json()
        assert body["status"] == "success", (expr, body)
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in body["data"]["result"]}

    def scalar(self, expr):
        """The value of an expression of one series, None while it has none."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return next(iter(result.values()), None)

    def by(self, label, expr):
        return {dict(labels)[label]: value for labels, value in self.query(expr).items()}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def start_prometheus(tmp_path):
    started = []

    def start(targets):
        started.append(Prometheus(tmp_path, targets))
        return started[-1]

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture(scope="module")
def host_sockets(ground):
    return subprocess.run(["bash", str(TESTENV), "hosts", ground.dir, "3"], check=True, capture_output=True,
                          text=True).stdout.split()


@pytest.fixture
def empty_hosts(host_sockets):
    """The three hosts' image stores empty before the test and after it."""
    def prune():
        for socket in host_sockets:
            client = docker.APIClient(base_url="unix://" + socket, version="auto")
            client.prune_images(filters={"dangling": False})
            client.close()

    prune()
    yield host_sockets
    prune()


@pytest.fixture
def trickle(ground):
    p = TrickleProxy(ground.registry_port, RATE)
    yield p
    p.close()


@pytest.fixture
def cache(trickle, tmp_path):
    """A pull-through cache of the slow registry: the mirror one host pulls through."""
    mirror = Registry(tmp_path, remote="http://127.0.0.1:%d" % trickle.port)
    yield mirror
    mirror.stop()


def _job(server, job_id):
    resp = requests.get(server.url + "/jobs/" + job_id, timeout=10)
    server.bodies.append(resp.text)
    return resp.json()


def _dashboard_exprs():
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_a_rollout_over_three_hosts_is_watched_from_prometheus(ground, empty_hosts, trickle, cache, start_server,
                                                               start_prometheus):
    t0 = time.monotonic()
    names = ["host1", "host2", "host3"]
    servers = dict(zip(names, [
        start_server("--docker-socket", empty_hosts[0]),
        start_server("--docker-socket", empty_hosts[1]),
        start_server("--docker-socket", empty_hosts[2], "--mirror", "%s=%s" % (trickle.address, cache.address))]))
    instance = {name: "127.0.0.1:%d" % server.port for name, server in servers.items()}
    prom = start_prometheus([(name, instance[name]) for name in names])
    assert prom.query("puller_job_images_desired") == {}  # no job yet: no job series

    release = [ground.image(n, registry=trickle.address) for n in range(1, IMAGES + 1)]
    missing = "%s/fixture/missing-image" % trickle.address
    bodies = {"host1": release + [missing], "host2": release, "host3": release}
    jobs, t_jobs = {}, time.monotonic()
    for name in names:
        resp = requests.post(servers[name].url + "/jobs", json={"images": bodies[name], "concurrency": 3},
                             timeout=10)
        assert resp.status_code == 202, resp.text
        jobs[name] = resp.json()["id"]

    # During the rollout: what Prometheus says of the fleet, as a person watching it would ask.
    seen, seen_bytes, ended = [], [], {}
    deadline = time.monotonic() + 180
    while len(ended) < len(names):
        assert time.monotonic() < deadline, "the rollout did not end: %s" % {n: _job(servers[n], jobs[n])
                                                                             for n in names}
        # Counted once every host's job shows (their first scrapes come within a second of each other).
        seen.append(prom.scalar("(%s) and on() (count(puller_job_images_desired) == 3)" % PROGRESS))
        seen_bytes.append(prom.scalar(BYTES))
        for name in names:
            if name not in ended and _job(servers[name], jobs[name])["status"] not in ("queued", "running"):
                ended[name] = _job(servers[name], jobs[name])
        time.sleep(0.25)
    rollout_s, setup_s = time.monotonic() - t_jobs, t_jobs - t0
    assert ended["host1"]["status"] == "failed" and ended["host1"]["failed"] == 1, ended["host1"]
    assert ended["host2"]["status"] == ended["host3"]["status"] == "succeeded", ended

    # The servers' last scrapes: the jobs have ended, and their gauges stay with the final figures.
    end = time.monotonic() + 10
    while prom.scalar("sum(puller_job_images_done)") != 3 * IMAGES + 1 and time.monotonic() < end:
        time.sleep(0.2)
    final, final_bytes = prom.scalar(PROGRESS), prom.scalar(BYTES)

    values = [v for v in seen if v is not None]
    between = sorted(set(round(v, 4) for v in values if 0 < v < 1))
    assert len(between) >= 3, values  # it rose through several values...
    assert all(b >= a - 1e-9 for a, b in zip(values, values[1:])), values  # ... and never went down
    assert final == 1.0, (final, values)  # and ended at 100 %
    bytes_between = sorted(set(round(v, 4) for v in seen_bytes if v is not None and 0 < v < 1))
    assert len(bytes_between) >= 2, seen_bytes
    assert final_bytes == 1.0, (final_bytes, seen_bytes)

    assert prom.scalar("sum(puller_job_images_desired)") == 3 * IMAGES + 1
    assert prom.by("instance", "sum by (instance) (puller_job_images_failed)") == {
        instance["host1"]: 1.0, instance["host2"]: 0.0, instance["host3"]: 0.0}
    assert prom.by("host", "sum by (host) (puller_job_images_failed)") == {"host1": 1.0, "host2": 0.0, "host3": 0.0}
    assert prom.by("job_id", "puller_job_images_desired") == {
        jobs["host1"]: IMAGES + 1.0, jobs["host2"]: float(IMAGES), jobs["host3"]: float(IMAGES)}

    # Origin versus mirror: host3's bytes came through the cache, the others' from the registry itself.
    job_bytes = prom.by("host", "sum by (host) (puller_job_bytes_done)")
    assert all(job_bytes[name] >= IMAGES * 3 * 64 * 1024 for name in names), job_bytes
    via = prom.by("via", "sum by (via) (puller_pulled_bytes_total)")
    assert via == {"origin": job_bytes["host1"] + job_bytes["host2"], "mirror": job_bytes["host3"]}, (via, job_bytes)
    assert prom.by("source", "sum by (source) (puller_pulled_bytes_total)") == {
        "origin": job_bytes["host1"] + job_bytes["host2"], cache.address: job_bytes["host3"]}

    # Every expression of the dashboard is valid PromQL and has data, as Grafana would ask it.
    for title, expr in _dashboard_exprs():
        asked = expr.replace("$__rate_interval", "1m").replace("$__range", "5m")
        assert prom.query(asked), "panel %r: %s has no data" % (title, asked)

    # The next job on host2 takes the place of the ended one: series stay bounded by the jobs.
    again = requests.post(servers["host2"].url + "/jobs", json={"images": release[:1]}, timeout=10).json()["id"]
    end = time.monotonic() + 15
    while prom.by("job_id", 'puller_job_images_desired{host="host2"}') != {again: 1.0}:
        assert time.monotonic() < end, prom.query('puller_job_images_desired{host="host2"}')
        time.sleep(0.2)
    assert set(prom.by("job_id", "puller_job_images_desired")) == {jobs["host1"], again, jobs["host3"]}

    first_bytes = next(v for v in seen_bytes if v is not None and not math.isnan(v))  # NaN (0/0) until a download starts
    report(ground, "fleet metrics: 3 hosts x %d images in %.1fs (servers and Prometheus up in %.1fs); the fleet "
           "progress took %d values between 0 and 1 (%.3f ... %.3f), then %.1f; the bytes ratio %d (first %.3f, "
           "lowest %.3f), then %.1f; bytes via the mirror %d, from the origin %d"
           % (IMAGES, rollout_s, setup_s, len(between), between[0], between[-1], final, len(bytes_between),
              first_bytes, bytes_between[0], final_bytes, via["mirror"], via["origin"]))
