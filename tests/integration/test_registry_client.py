"""The registry client (``_registry``) against the test ground's registries: the
open one, the basic-auth one, and a Bearer token registry of its own."""

import base64
import hashlib
import json
import re
import time

import pytest
import requests

from conftest import LEAKS
from faultproxy import FaultProxy, Rules
from mirrors import layer_digests
from puller.core._errors import PermanentPullError, TransientPullError
from puller.core._reference import parse_reference
from puller.core._registry import OCI_INDEX, RegistryClient
from tokenauth import TokenRegistry, TokenServer

TOKEN_USER, TOKEN_PASSWORD, REFRESH = "token-user", "T0ken-Registry-Pa55", "R3fresh-Token-0f-puller"
WRONG = "Wr0ng-Token-Pa55word"
LEAKS.secrets.update([TOKEN_PASSWORD, REFRESH, WRONG])
INDEX_REPO = "crirt-index/multi"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """A token registry holding ``crirt/tokened:latest`` (a copy of fixture/img-01)."""
    workdir = tmp_path_factory.mktemp("token-registry")
    server = TokenServer(workdir, TOKEN_USER, TOKEN_PASSWORD, REFRESH)
    registry = TokenRegistry(workdir, server)
    yield registry
    registry.stop()
    server.close()


@pytest.fixture(scope="module")
def tokened(tokens, ground):
    return tokens.address + "/crirt/tokened", tokens.copy(ground.registry, "fixture/img-01", "crirt/tokened")


def _manifest(registry, repo, ref):
    resp = requests.get("http://%s/v2/%s/manifests/%s" % (registry, repo, ref), headers={"Accept": MANIFEST_V2},
                        timeout=10)
    resp.raise_for_status()
    return resp.content


def push_index(registry):
    """``crirt-index/multi:latest`` on the open registry: an OCI index of
    fixture/img-02 for linux/amd64, fixture/img-01 for linux/arm64/v8, and an
    attestation-like entry; returns (index digest, {platform: manifest digest})."""
    entries, by_platform = [], {}
    for source, platform in (("fixture/img-01", {"os": "linux", "architecture": "arm64", "variant": "v8"}),
                             ("fixture/img-02", {"os": "linux", "architecture": "amd64"}),
                             ("fixture/img-01", {"os": "unknown", "architecture": "unknown"})):
        body = _manifest(registry, source, "latest")
        document = json.loads(body)
        for blob in [document["config"]] + document["layers"]:
            mount = requests.post("http://%s/v2/%s/blobs/uploads/" % (registry, INDEX_REPO),
                                  params={"mount": blob["digest"], "from": source}, timeout=10)
            assert mount.status_code == 201, mount.text
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        requests.put("http://%s/v2/%s/manifests/%s" % (registry, INDEX_REPO, digest), data=body,
                     headers={"Content-Type": MANIFEST_V2}, timeout=10).raise_for_status()
        entries.append({"mediaType": MANIFEST_V2, "digest": digest, "size": len(body), "platform": platform})
        by_platform.setdefault("/".join(platform.values()), digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    requests.put("http://%s/v2/%s/manifests/latest" % (registry, INDEX_REPO), data=index,
                 headers={"Content-Type": OCI_INDEX}, timeout=10).raise_for_status()
    return "sha256:" + hashlib.sha256(index).hexdigest(), by_platform


@pytest.fixture(scope="session")
def index_image(ground):
    return push_index(ground.registry)


def test_open_registry_manifest_and_digest(ground):
    client = RegistryClient(timeout=5)
    ref = parse_reference(ground.image(3))
    found = client.manifest(ref, "linux/amd64")
    assert [layer.digest for layer in found.layers] == layer_digests(ground.registry, "fixture/img-03")
    assert all(layer.size > 64 * 1024 for layer in found.layers)
    head = requests.head("http://%s/v2/fixture/img-03/manifests/latest" % ground.registry,
                         headers={"Accept": MANIFEST_V2}, timeout=10).headers["Docker-Content-Digest"]
    assert found.digest == head and found.index_digest is None and found.config.digest.startswith("sha256:")
    assert client.digest(ref) == head
    assert client.manifest(ground.image(3) + "@" + head, "linux/amd64") == found
    with pytest.raises(PermanentPullError) as caught:
        client.manifest(ground.image(3) + ":no-such-tag", "linux/amd64")
    assert "404" in caught.value.message and "manifest unknown" in caught.value.message.lower()


def test_index_is_followed_to_the_platform(ground, index_image):
    index_digest, by_platform = index_image
    client = RegistryClient(timeout=5)
    ref = "%s/%s" % (ground.registry, INDEX_REPO)
    amd64 = client.manifest(ref, "linux/amd64")
    assert amd64.index_digest == index_digest and amd64.digest == by_platform["linux/amd64"]
    assert [layer.digest for layer in amd64.layers] == layer_digests(ground.registry, "fixture/img-02")
    for platform in ("linux/arm64", "linux/arm64/v8", "linux/aarch64"):
        assert client.manifest(ref, platform).digest == by_platform["linux/arm64/v8"]
    with pytest.raises(PermanentPullError) as caught:
        client.manifest(ref, "linux/s390x")
    assert "no matching manifest for linux/s390x" in caught.value.message
    assert client.digest(ref) == index_digest


def test_basic_auth_registry(ground):
    client = RegistryClient(timeout=5)
    image = ground.private_image(1)
    found = client.manifest(image, "linux/amd64", {"username": ground.user, "password": ground.password})
    assert len(found.layers) == 3
    for auth in ({}, {"username": ground.user, "password": WRONG}):
        with pytest.raises(PermanentPullError) as caught:
            client.manifest(image, "linux/amd64", auth)
        assert "401" in caught.value.message and WRONG not in caught.value.message
    auth = {"auth": base64.b64encode(("%s:%s" % (ground.user, ground.password)).encode()).decode()}
    assert client.digest(image, auth) == found.digest


def test_bearer_token_registry(tokens, tokened):
    image, digest = tokened
    client = RegistryClient(timeout=5)
    before = len(tokens.tokens.grants())
    found = client.manifest(image, "linux/amd64", {"username": TOKEN_USER, "password": TOKEN_PASSWORD})
    assert found.digest == digest and len(found.layers) == 3
    grants = tokens.tokens.grants()[before:]
    assert grants == [("GET", TOKEN_USER, None, "repository:crirt/tokened:pull")]  # one token, basic creds
    # an identity token (OAuth2 refresh token), and a registry token sent as is
    assert client.digest(image, {"identitytoken": REFRESH}) == digest
    assert tokens.tokens.grants()[-1][:3] == ("POST", None, "refresh_token")
    minted = tokens.tokens.token(TOKEN_USER, [{"type": "repository", "name": "crirt/tokened", "actions": ["pull"]}])
    LEAKS.secrets.add(minted)
    count = len(tokens.tokens.grants())
    assert client.digest(image, {"registrytoken": minted}) == digest
    assert len(tokens.tokens.grants()) == count
    for auth in ({}, {"username": TOKEN_USER, "password": WRONG}, {"identitytoken": WRONG}):
        with pytest.raises(PermanentPullError) as caught:
            client.manifest(image, "linux/amd64", auth)
        assert "401" in caught.value.message
        assert WRONG not in caught.value.message and TOKEN_PASSWORD not in caught.value.message


def test_everything_is_bounded_by_the_timeout(ground):
    proxy = FaultProxy(ground.registry_port)
    proxy.reset_stats(Rules(pattern=re.compile(r"^/v2/"), delay=10.0))
    try:
        client = RegistryClient(timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(TransientPullError) as caught:
            client.manifest("%s/fixture/img-01" % proxy.address, "linux/amd64")
        assert time.monotonic() - t0 < 2.0
        assert "timeout" in caught.value.message
    finally:
        proxy.close()
