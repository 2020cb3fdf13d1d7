"""The CRI client against the test ground's private containerd (its CRI plugin
on, as on a Kubernetes node) and the test registries."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from conftest import LEAKS, TESTENV, _read_env, fixture_set, free_port, report
from faultproxy import FaultProxy
from puller.core._cri_api import CriClient, PullCancelled, host_platform
from puller.core._errors import DaemonUnavailable, DeadlineExceeded, PermanentPullError, TransientPullError

BIG = "cri-big"  # one image of two 6 MiB layers (random data: gzip keeps it that size)
BIG_LAYER_KIB = 6144
WRONG_PASSWORD = "Wr0ng-Registry-Pa55"
LEAKS.secrets.add(WRONG_PASSWORD)
MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json",
                            "application/vnd.oci.image.index.v1+json"])


class _Throttled:
    """A socket file that writes at most ``rate`` bytes a second."""

    def __init__(self, wfile, rate):
        self._wfile, self._rate = wfile, rate

    def write(self, data):
        for i in range(0, len(data), 65536):
            piece = data[i:i + 65536]
            self._wfile.write(piece)
            time.sleep(len(piece) / self._rate)

    def __getattr__(self, name):
        return getattr(self._wfile, name)


class SlowProxy(FaultProxy):
    """The fault proxy, sending blobs at ``rate`` bytes a second per connection:
    a pull of the big image lasts seconds, long enough to watch and cancel."""

    def __init__(self, upstream_port, rate=4 << 20):
        super().__init__(upstream_port)
        self.rate = rate

    def _forward(self, h, body, hang=0.0):
        if "/blobs/" in h.path:
            h.wfile = _Throttled(h.wfile, self.rate)
        return super()._forward(h, body, hang)


def _containerd(ground, action):
    subprocess.run(["bash", str(TESTENV), action, ground.dir], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def cri_env(ground):
    """The test ground's containerd lines of env.sh (started here in a test
    ground made before it had one)."""
    if "PULLER_TEST_CRI_SOCKET" not in ground.env:
        _containerd(ground, "containerd")
        ground.env.update(_read_env(Path(ground.dir, "env.sh")))
    return ground.env


def _remove_all(client):
    for image in client.list_images():
        client.remove(image["id"])


@pytest.fixture
def cri(cri_env):
    """A client of the private containerd, with its image store empty before and after."""
    client = CriClient(cri_env["PULLER_TEST_CRI_SOCKET"], timeout=20)
    _remove_all(client)
    yield client
    _remove_all(client)
    client.close()


@pytest.fixture(scope="session")
def big_image(ground):
    """``localhost:PORT/cri-big/img-01``, built and pushed once."""
    return fixture_set(ground, BIG, 1, 2, BIG_LAYER_KIB)[0]


@pytest.fixture
def slow(ground):
    p = SlowProxy(ground.registry_port)
    yield p
    p.close()


def registry_digest(registry, path, tag="latest", auth=None):
    resp = requests.head("http://%s/v2/%s/manifests/%s" % (registry, path, tag),
                         headers={"Accept": MANIFEST_TYPES}, auth=auth, timeout=10)
    resp.raise_for_status()
    return resp.headers["Docker-Content-Digest"]


def ctr_images(env):
    out = subprocess.run([env["PULLER_TEST_CTR"], "--address", env["PULLER_TEST_CRI_SOCKET"], "-n",
                          env["PULLER_TEST_CRI_NAMESPACE"], "images", "ls", "-q"],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def wait_until(predicate, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def test_version_and_platform(cri):
    version = cri.version()
    assert version["runtime_name"] == "containerd"
    assert version["runtime_api_version"] == "v1"
    # containerd's CRI plugin says which platform it pulls for; it runs here.
    assert cri.node_platform() == host_platform() == "linux/amd64"


def test_pull_shows_in_status_list_and_ctr(cri, ground, cri_env):
    image = ground.image(1)
    image_id = cri.pull(image).result(timeout=60)
    assert image_id.startswith("sha256:")
    digest = registry_digest(ground.registry, "fixture/img-01")
    status = cri.image_status(image)
    assert status["id"] == image_id
    assert status["repo_tags"] == [image + ":latest"]
    assert status["repo_digests"] == ["%s@%s" % (image, digest)]
    assert status["size"] > 0
    # by ID and by digest, too
    assert cri.image_status(image_id)["id"] == image_id
    assert cri.image_status("%s@%s" % (image, digest))["id"] == image_id
    assert [i["id"] for i in cri.list_images()] == [image_id]
    assert image + ":latest" in ctr_images(cri_env)
    cri.remove(image)
    cri.remove(image)  # removing an absent image is no error
    assert cri.image_status(image) is None
    assert image + ":latest" not in ctr_images(cri_env)


def test_missing_image_tag_or_digest_is_permanent(cri, ground):
    assert cri.image_status(ground.registry + "/fixture/none") is None
    for image in (ground.registry + "/fixture/none", ground.image(1) + ":no-such-tag",
                  ground.image(1) + "@sha256:" + "0" * 64):
        with pytest.raises(PermanentPullError) as caught:
            cri.pull(image).result(timeout=60)
        assert "NOT_FOUND" in caught.value.message and "not found" in caught.value.message
    assert cri.list_images() == []


def test_private_image_needs_the_right_credentials(cri, ground):
    image = ground.private_image(1)
    for auth in (None, {"username": ground.user, "password": WRONG_PASSWORD}):
        with pytest.raises(PermanentPullError) as caught:
            cri.pull(image, auth=auth).result(timeout=60)
        assert "401 Unauthorized" in caught.value.message
        assert WRONG_PASSWORD not in caught.value.message and ground.password not in caught.value.message
    assert cri.image_status(image) is None
    image_id = cri.pull(image, auth={"username": ground.user, "password": ground.password}).result(timeout=60)
    assert cri.image_status(image)["id"] == image_id
    assert cri.image_status(image)["repo_digests"] == [
        "%s@%s" % (image, registry_digest(ground.auth_registry, "private/img-01", auth=(ground.user, ground.password)))]


def test_credentials_go_to_the_image_registry_only(cri, ground):
    # containerd compares server_address's host with the registry it calls:
    # credentials named for another host are not sent, and the pull is refused.
    auth = {"username": ground.user, "password": ground.password, "serveraddress": "other.example:5000"}
    with pytest.raises(PermanentPullError) as caught:
        cri.pull(ground.private_image(2), auth=auth).result(timeout=60)
    assert "401 Unauthorized" in caught.value.message


def test_registry_down_is_transient(cri):
    with pytest.raises(TransientPullError) as caught:
        cri.pull("localhost:%d/fixture/img-01" % free_port()).result(timeout=60)
    assert "connection refused" in caught.value.message
    assert not isinstance(caught.value, PullCancelled)


def test_ingests_show_byte_progress(cri, slow, big_image):
    image = "%s/%s" % (slow.address, big_image)
    handle = cri.pull(image)
    samples = []
    while not handle.done():
        samples.append(cri.ingests())
        time.sleep(0.05)
    image_id = handle.result()
    layers = {}
    for sample in samples:
        for ref, offset, total in sample:
            if ref.startswith("layer-sha256:"):
                layers.setdefault(ref, []).append((offset, total))
    assert len(layers) == 2, samples
    for ref, seen in layers.items():
        totals = {t for _o, t in seen}
        assert len(totals) == 1 and totals.pop() > BIG_LAYER_KIB * 1024  # the compressed blob's size
        offsets = [o for o, _t in seen]
        assert offsets == sorted(offsets), (ref, offsets)  # never goes back
        assert any(0 < o < seen[0][1] for o in offsets), (ref, offsets)  # seen part way
    assert cri.ingests() == []  # finished blobs drop out
    assert cri.image_status(image)["id"] == image_id


def test_cancel_stops_the_download(cri, slow, big_image):
    image = "%s/%s" % (slow.address, big_image)
    handle = cri.pull(image)
    assert wait_until(lambda: any(o > 0 for _r, o, _t in cri.ingests()), 20), "no download started"
    handle.cancel()
    with pytest.raises(PullCancelled):
        handle.result(timeout=5)
    assert wait_until(lambda: cri.ingests() == [], 5), cri.ingests()
    sent = slow.bytes_out
    assert sent < 2 * BIG_LAYER_KIB * 1024
    time.sleep(1.0)
    assert slow.bytes_out - sent < 256 << 10, "the registry kept sending after the cancel"
    assert cri.image_status(image) is None
    assert cri.list_images() == []


def test_timeout_aborts_the_pull(cri, slow, big_image):
    image = "%s/%s" % (slow.address, big_image)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        cri.pull(image, timeout=1.0).result(timeout=10)
    assert time.monotonic() - t0 < 3
    assert wait_until(lambda: cri.ingests() == [], 5)
    assert cri.image_status(image) is None


def test_stopped_containerd_is_unavailable(cri, ground):
    _containerd(ground, "containerd-stop")
    try:
        with pytest.raises(DaemonUnavailable):
            cri.version()
        with pytest.raises(DaemonUnavailable):
            cri.image_status(ground.image(1))
        with pytest.raises(DaemonUnavailable):
            cri.pull(ground.image(1)).result(timeout=30)
        with pytest.raises(DaemonUnavailable):
            cri.ingests()
    finally:
        _containerd(ground, "containerd-start")
    # The same client reconnects within about a second, not gRPC's default
    # backoff of up to two minutes.

    def answers():
        try:
            return cri.version()
        except DaemonUnavailable:
            return None
    assert wait_until(answers, 5, step=0.2)
    assert cri.pull(ground.image(1)).result(timeout=60).startswith("sha256:")


GEVENT_CHILD = textwrap.dedent("""
    import json, sys, time
    from gevent import monkey
    monkey.patch_all()
    import gevent
    import grpc.experimental.gevent
    grpc.experimental.gevent.init_gevent()
    from puller.core._cri_api import CriClient

    client = CriClient(sys.argv[1], timeout=20)
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    t = gevent.spawn(ticker)
    t0 = time.monotonic()
    pull = gevent.spawn(lambda: client.pull(sys.argv[2]).result())  # blocks its greenlet only
    image_id = pull.get(timeout=60)
    t1 = time.monotonic()
    t.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if t0 <= a <= t1]
    print(json.dumps({"image_id": image_id, "seconds": t1 - t0, "ticks": len(gaps), "max_gap": max(gaps)}))
""")


def test_pull_under_gevent_leaves_other_greenlets_running(cri, slow, big_image, ground):
    image = "%s/%s" % (slow.address, big_image)
    out = subprocess.run([sys.executable, "-c", GEVENT_CHILD, ground.env["PULLER_TEST_CRI_SOCKET"], image],
                         check=True, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["image_id"] == cri.image_status(image)["id"]
    assert result["seconds"] > 1  # the pull really took a while...
    assert result["max_gap"] < 0.5, result  # ...and the ticker never stopped for long
    assert result["ticks"] > result["seconds"] / 0.01 / 4, result
    report(ground, "cri under gevent: a %.1fs pull of 12 MiB, other greenlet ran %d times, longest gap %.0f ms"
           % (result["seconds"], result["ticks"], result["max_gap"] * 1000))
