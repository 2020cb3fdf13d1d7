"""Fan-out by digest: hosts pull a release from a site registry by the digests
a preheat resolved, with the origin refusing every connection, and end with
the origin's names and content verified by digest."""

import io
import json
import os
import socket
import tarfile
import subprocess
import sys
import threading

import docker
import pytest
import requests

from conftest import TESTENV, report
from faultproxy import FaultProxy
from mirrors import Registry
from puller.core._engine import Engine, EngineConfig
from puller.core._request import parse_pull_request
from test_cri_client import registry_digest

RELEASE = range(1, 7)


class Refuser:
    """An origin that is down: it accepts each connection and closes it at once, counting them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.sock.close()


def copy(src, dst):
    """The site's copy of an image, byte for byte (what a preheat makes)."""
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "--retry-times", "0", "--src-tls-verify=false",
                    "--dest-tls-verify=false", "docker://" + src, "docker://" + dst], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def site(ground, tmp_path_factory):
    """A plain registry holding the release under the origin's paths; the origin's digests."""
    registry = Registry(tmp_path_factory.mktemp("site"))
    digests = {}
    for n in RELEASE:
        path = "fixture/img-%02d" % n
        copy("%s/%s:latest" % (ground.registry, path), "%s/%s:latest" % (registry.address, path))
        digests[path] = registry_digest(ground.registry, path)
        assert registry_digest(registry.address, path) == digests[path]
    yield registry, digests
    registry.stop()


@pytest.fixture
def origin():
    down = Refuser()
    yield down
    down.close()


@pytest.fixture(scope="module")
def hosts(ground):
    return subprocess.run(["bash", str(TESTENV), "hosts", ground.dir, "3"], check=True, capture_output=True,
                          text=True).stdout.split()


def _empty(sock):
    client = docker.APIClient(base_url="unix://" + sock, version="auto")
    client.prune_images(filters={"dangling": False})
    return client


def _release(origin, digests):
    return [{"image": "%s/%s" % (origin.address, path), "tag": "latest", "digest": digest}
            for path, digest in digests.items()]


def test_three_hosts_fan_out_by_digest_without_the_origin(ground, site, origin, hosts):
    registry, digests = site
    mirrors = {origin.address: (registry.address,)}
    for sock in hosts:
        client = _empty(sock)
        result = Engine(EngineConfig(docker_host=sock, backoff_base=0.05)).pull(
            parse_pull_request({"images": _release(origin, digests), "concurrency": 4}, mirrors=mirrors))
        assert result.ok, result.failure
        for row, (path, digest) in zip(result.success, digests.items()):
            assert (row["status"], row["digest"], row["source"]) == ("pulled", digest, registry.address), row
            canonical = "%s/%s:latest" % (origin.address, path)
            image = client.inspect_image(canonical)
            assert image["Id"] == row["id"]
            # dockerd keeps the digest it verified under the site's name, and no site-named tag
            assert image["RepoDigests"] == ["%s/%s@%s" % (registry.address, path, digest)]
            assert image["RepoTags"] == [canonical]
    assert origin.connections == 0  # not one connection to the origin, for 3 hosts x 6 images
    # pull: missing knows the pinned content is there under its tag: nothing asked of anyone
    again = Engine(EngineConfig(docker_host=hosts[0])).pull(
        parse_pull_request({"images": _release(origin, digests), "pull": "missing"}, mirrors=mirrors))
    assert {row["status"] for row in again.success} == {"present"} and origin.connections == 0
    report(ground, "fan-out by digest: 3 hosts x %d images from the site, origin down, 0 origin connections"
           % len(digests))


class Rogue(FaultProxy):
    """A site that answers a manifest request for one image with another image's manifest."""

    def __init__(self, upstream_port, swap):
        super().__init__(upstream_port, preserve_headers=True)
        self.swap = swap  # request path -> path it is answered from

    def _forward(self, h, body, hang=0.0):
        path = h.path.split("?", 1)[0]
        if path in self.swap:
            h.path = self.swap[path]
        return super()._forward(h, body, hang)


def _unique_image(ground, registry, name):
    """An image no daemon has seen (random content), pushed to ``registry``; its digest there."""
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w") as tar:
        data = os.urandom(4096)
        info = tarfile.TarInfo("random")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    client = ground.client()
    client.import_image_from_data(blob.getvalue(), repository="%s/%s" % (registry.address, name), tag="1")
    for _line in client.push("%s/%s" % (registry.address, name), tag="1", stream=True, decode=True):
        pass
    return registry_digest(registry.address, name, "1")


def test_a_rogue_site_cannot_plant_other_content_under_a_pinned_tag(ground, site, origin, hosts):
    registry, digests = site
    other = list(digests)[0]
    digest = _unique_image(ground, registry, "rogue/app")  # content the host has never held
    # The rogue answers for the pinned digest with another image's manifest (and for the tag too).
    rogue = Rogue(registry.port, {"/v2/rogue/app/manifests/%s" % digest: "/v2/%s/manifests/latest" % other,
                                  "/v2/rogue/app/manifests/1": "/v2/%s/manifests/latest" % other})
    client = _empty(hosts[1])
    result = Engine(EngineConfig(docker_host=hosts[1], backoff_base=0.05)).pull(parse_pull_request(
        {"images": [{"image": "%s/rogue/app" % origin.address, "tag": "1", "digest": digest}], "retry": 1},
        mirrors={origin.address: (rogue.address,)}))
    assert ("GET", "/v2/rogue/app/manifests/%s" % digest) in rogue.manifest_requests
    (row,) = result.failure
    assert row["mirrors"][0]["mirror"] == rogue.address and "digest" in row["mirrors"][0]["error"], row
    assert not client.images(name="%s/rogue/app" % origin.address)  # nothing planted under the origin's name
    assert not client.images(name="%s/rogue/app" % rogue.address)


def test_the_api_and_the_cli_take_the_digests(site, origin, clean, start_server, tmp_path):
    registry, digests = site
    server = start_server("--mirror", "%s=%s" % (origin.address, registry.address))
    resp = server.pull({"images": _release(origin, digests)[:2], "concurrency": 2})
    assert resp.status_code == 200, resp.text
    assert [row["digest"] for row in resp.json()["success"]] == list(digests.values())[:2]
    bad = server.pull({"images": [{"image": origin.address + "/x", "digest": "sha256:12"}]})
    assert bad.status_code == 400 and bad.json()["field"] == "images[0].digest", bad.text
    # The CLI: a preheat's report (its --json) gives both the images and their digests
    clean.remove_all_images()
    report_file = tmp_path / "preheat.json"
    report_file.write_text(json.dumps({"success": [dict(item, project="p", bytes_copied=1)
                                                   for item in _release(origin, digests)], "failure": []}))
    done = subprocess.run([sys.executable, "-m", "puller", "pull", "--docker-socket", clean.socket, "--json", "--digests", str(report_file),
                           "--mirror", "%s=%s" % (origin.address, registry.address)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["success"]
    assert [(row["digest"], row["source"]) for row in rows] == [(d, registry.address) for d in digests.values()]
    assert origin.connections == 0
    assert requests.get(server.url + "/ping").status_code == 200
