"""Pure logic of the registry client and of platforms: challenges, index selection, schemes."""

import pytest

from puller.core._errors import PermanentPullError
from puller.core._platforms import parse_platform, runs, select_manifest
from puller.core._registry import (Descriptor, ImageManifest, RegistryClient, credentials_for, host_only,
                                   parse_challenges, plain_http_allowed, registry_host)
from puller.core._runtime_cri import platform_error


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    # two challenges in one header; a scope with a comma inside its quotes
    ('Basic realm="r", Bearer realm="https://t.example/token", service=reg, scope="repository:a/b:pull,push"',
     [("basic", {"realm": "r"}),
      ("bearer", {"realm": "https://t.example/token", "service": "reg", "scope": "repository:a/b:pull,push"})]),
    ('BEARER Realm="x\\"y"', [("bearer", {"realm": 'x"y'})]),  # case-insensitive names, escaped quote
    ("Negotiate", [("negotiate", {})]),
    ("", []),
    (None, []),
])
def test_challenges(header, expected):
    assert parse_challenges(header) == expected


@pytest.mark.parametrize("text, expected", [
    ("linux/amd64", ("linux", "amd64", "v1")),
    ("linux/x86_64", ("linux", "amd64", "v1")),
    ("linux/arm64", ("linux", "arm64", "v8")),
    ("linux/aarch64", ("linux", "arm64", "v8")),
    ("linux/arm64/v8", ("linux", "arm64", "v8")),
    ("linux/arm", ("linux", "arm", "v7")),
    ("linux/armhf", ("linux", "arm", "v7")),
    ("linux/arm/6", ("linux", "arm", "v6")),
    ("Linux/AMD64/v2", ("linux", "amd64", "v2")),
    ("windows/amd64", ("windows", "amd64", "v1")),
])
def test_platforms_are_normalised(text, expected):
    assert tuple(parse_platform(text)) == expected


def test_what_a_node_runs():
    assert runs("linux/arm64") == [("arm64", "v8"), ("arm", "v8"), ("arm", "v7"), ("arm", "v6"), ("arm", "v5")]
    assert runs("linux/arm/v7") == [("arm", "v7"), ("arm", "v6"), ("arm", "v5")]
    assert runs("linux/amd64") == [("amd64", "v1"), ("386", "")]
    assert runs("linux/amd64/v3")[:3] == [("amd64", "v3"), ("amd64", "v2"), ("amd64", "v1")]
    assert runs("linux/s390x") == [("s390x", "")]


def _entry(name, os_name, arch, variant=None):
    platform = {"os": os_name, "architecture": arch}
    if variant:
        platform["variant"] = variant
    return {"digest": name, "platform": platform}


INDEX = {"manifests": [
    {"digest": "no-platform"},
    _entry("attestation", "unknown", "unknown"),
    _entry("arm-v6", "linux", "arm", "v6"),
    _entry("arm-v7", "linux", "arm", "v7"),
    _entry("arm64", "linux", "arm64"),  # no variant written: v8
    _entry("amd64", "linux", "amd64"),
    _entry("windows", "windows", "amd64"),
    _entry("386", "linux", "386"),
]}


@pytest.mark.parametrize("platform, chosen", [
    ("linux/amd64", "amd64"),
    ("linux/arm64/v8", "arm64"),
    ("linux/arm64", "arm64"),
    ("linux/arm/v7", "arm-v7"),
    ("linux/arm/v6", "arm-v6"),
    ("windows/amd64", "windows"),
    ("linux/s390x", None),
    ("linux/arm/v5", None),
])
def test_index_selection(platform, chosen):
    found = select_manifest(INDEX, platform)
    assert (found or {}).get("digest") == chosen


def test_index_selection_falls_back_best_first_whatever_the_order():
    older = {"manifests": [_entry("v5", "linux", "arm", "v5"), _entry("v6", "linux", "arm", "v6")]}
    assert select_manifest(older, "linux/arm/v7")["digest"] == "v6"
    assert select_manifest({"manifests": [_entry("32", "linux", "arm", "v7")]}, "linux/arm64")["digest"] == "32"
    assert select_manifest({"manifests": [_entry("386", "linux", "386")]}, "linux/amd64")["digest"] == "386"
    assert select_manifest({"manifests": "junk"}, "linux/amd64") is None
    assert select_manifest({}, "linux/amd64") is None


def test_platform_errors():
    assert platform_error("linux/amd64", "linux/amd64") is None
    assert platform_error("linux/x86_64", "linux/amd64") is None
    assert platform_error("linux/arm64", "linux/arm64/v8") is None
    assert platform_error("linux/arm64/v8", "linux/arm64") is None
    message = platform_error("linux/arm64", "linux/amd64")
    assert "linux/amd64" in message and "linux/arm64" in message
    assert platform_error("linux/amd64/v2", "linux/amd64") is not None
    assert platform_error("linux/arm/v6", "linux/arm/v7") is not None
    assert platform_error("windows/amd64", "linux/amd64") is not None


@pytest.mark.parametrize("hostport, plain", [
    ("localhost:5000", True), ("127.0.0.1:5000", True), ("[::1]:5000", True), ("localhost", True),
    ("registry.example:5000", False), ("10.0.0.1:5000", False), ("localhost.example:5000", False),
    ("insecure.example:5000", True), ("other.example", True), ("other.example:443", True),
])
def test_plain_http_only_to_loopback_or_insecure(hostport, plain):
    assert plain_http_allowed(hostport, ("insecure.example:5000", "other.example")) is plain


def test_hosts():
    assert host_only("[::1]:5000") == "::1" and host_only("localhost:5000") == "localhost"
    assert host_only("example.com") == "example.com"
    assert registry_host("docker.io") == registry_host("index.docker.io") == "registry-1.docker.io"
    assert registry_host("quay.io") == "quay.io"


def test_plain_http_elsewhere_is_refused_before_connecting():
    with pytest.raises(PermanentPullError) as caught:
        RegistryClient().request("GET", "http://registry.example.invalid/v2/", {}, 1.0)
    assert "plain HTTP" in caught.value.message
    with pytest.raises(PermanentPullError):
        RegistryClient().request("GET", "ftp://registry.example.invalid/v2/", {}, 1.0)


def test_manifest_digests():
    manifest = ImageManifest("sha256:m", "sha256:i", Descriptor("sha256:c", 1, ""),
                             (Descriptor("sha256:l1", 2, ""), Descriptor("sha256:l2", 3, "")))
    assert manifest.digests() == {"sha256:m", "sha256:i", "sha256:c", "sha256:l1", "sha256:l2"}
    assert ImageManifest("sha256:m", None, Descriptor("sha256:c", 1, ""), ()).digests() == {"sha256:m", "sha256:c"}


def test_credentials_go_only_to_the_host_they_name():
    auth = {"username": "u", "password": "p"}
    assert credentials_for("localhost:5000", auth) == auth
    assert credentials_for("localhost:5000", dict(auth, serveraddress="http://localhost:5000")) != {}
    assert credentials_for("localhost:5000", dict(auth, serveraddress="localhost:5000/v2/")) != {}
    assert credentials_for("localhost:5000", dict(auth, serveraddress="other.example:5000")) == {}
    hub = dict(auth, serveraddress="https://index.docker.io/v1/")
    assert credentials_for(registry_host("docker.io"), hub) == hub
    assert credentials_for("quay.io", hub) == {}
    assert credentials_for("quay.io", None) == {}
