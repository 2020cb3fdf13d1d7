"""Pure logic of the CRI client: references, credentials, platforms, messages."""

import base64

import pytest

from puller.core import _cri_api
from puller.core._cri_api import auth_message, cri_endpoint, cri_reference, host_platform
from puller.core._cri_proto import MESSAGES
from puller.core._errors import InvalidRequest

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("given, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("index.docker.io/bbklab/puller", "docker.io/bbklab/puller:latest"),
    ("localhost:5000/a/b", "localhost:5000/a/b:latest"),
    ("quay.io/x/y:1.2", "quay.io/x/y:1.2"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST),
    (DIGEST, DIGEST),  # an image ID, as ImageStatus and RemoveImage take
])
def test_references_are_fully_qualified(given, expected):
    assert cri_reference(given) == expected


@pytest.mark.parametrize("bad", ["", "a/UPPER", "a b", "a:b:c", 42])
def test_bad_references_name_the_image_field(bad):
    with pytest.raises(InvalidRequest) as caught:
        cri_reference(bad)
    assert caught.value.field == "image"


def test_endpoints():
    assert cri_endpoint(None) == "unix:///run/containerd/containerd.sock"
    assert cri_endpoint("/tmp/c.sock") == "unix:///tmp/c.sock"
    assert cri_endpoint("unix:///tmp/c.sock") == "unix:///tmp/c.sock"


@pytest.mark.parametrize("ref, serveraddress, expected", [
    ("localhost:5000/a/b:1", None, "https://localhost:5000"),
    ("docker.io/library/busybox:latest", None, "https://registry-1.docker.io"),
    ("docker.io/library/busybox:latest", "https://index.docker.io/v1/", "https://registry-1.docker.io"),
    ("quay.io/x/y:1", "quay.io", "https://quay.io"),
    ("localhost:5000/a/b:1", "http://localhost:5000/", "http://localhost:5000"),
])
def test_credentials_are_bound_to_a_host_with_a_scheme(ref, serveraddress, expected):
    # containerd compares the URL's host with the registry it calls; a value
    # without a scheme has no host for Go's URL parser, and no credentials go.
    auth = {"username": "u", "password": "p"}
    if serveraddress:
        auth["serveraddress"] = serveraddress
    message = auth_message(ref, auth)
    assert (message.username, message.password, message.server_address) == ("u", "p", expected)


def test_base64_auth_is_sent_decoded():
    encoded = base64.b64encode(b"user:pa:ss").decode()
    message = auth_message("localhost:5000/a:1", {"auth": encoded})
    assert (message.username, message.password, message.auth) == ("user", "pa:ss", "")
    for bad in ("%%%", base64.b64encode(b"no-colon-Secr3t").decode()):
        with pytest.raises(InvalidRequest) as caught:
            auth_message("localhost:5000/a:1", {"auth": bad})
        assert caught.value.field == "auth" and bad not in str(caught.value) and "Secr3t" not in str(caught.value)


def test_no_credentials_no_auth_message():
    assert auth_message("localhost:5000/a:1", None) is None
    assert auth_message("localhost:5000/a:1", {}) is None


@pytest.mark.parametrize("machine, expected", [
    ("x86_64", "linux/amd64"), ("aarch64", "linux/arm64"), ("armv7l", "linux/arm/v7"), ("ppc64le", "linux/ppc64le"),
])
def test_host_platform_uses_go_names(monkeypatch, machine, expected):
    monkeypatch.setattr(_cri_api._platform, "machine", lambda: machine)
    monkeypatch.setattr(_cri_api.sys, "platform", "linux")
    assert host_platform() == expected


def test_messages_use_the_upstream_field_numbers():
    # Bytes as a protoc-generated runtime.v1 / containerd module writes them.
    spec = MESSAGES["runtime.v1.ImageSpec"](image="x")
    request = MESSAGES["runtime.v1.PullImageRequest"](image=spec, auth=MESSAGES["runtime.v1.AuthConfig"](
        username="u", password="p", server_address="s"))
    assert request.SerializeToString() == b"\n\x03\n\x01x\x12\x09\n\x01u\x12\x01p\"\x01s"
    # content.v1.Status: started_at = 1 (skipped), ref = 3, offset = 4, total = 5
    status = MESSAGES["containerd.services.content.v1.ListStatusesResponse"].FromString(
        b"\n\x0f\n\x02\x08\x01\x1a\x03ref \x80\x80@(\x02")
    (only,) = status.statuses
    assert (only.ref, only.offset, only.total) == ("ref", 1 << 20, 2)
    image = MESSAGES["runtime.v1.Image"].FromString(b"\n\x01i\x12\x01t\x1a\x01d \x07@\x01")
    assert (image.id, list(image.repo_tags), list(image.repo_digests), image.size, image.pinned) == (
        "i", ["t"], ["d"], 7, True)
