"""Which runtime the module's connection options select (pure logic)."""

import pytest

from ansible_collections.bbklab.puller.plugins.module_utils._connection import (
    DEFAULT_CRI_ENDPOINT, connection_argument_spec, cri_endpoint_of)

ENDPOINT = "unix:///run/k3s/containerd/containerd.sock"


@pytest.mark.parametrize("runtime, endpoint, expected", [
    ("auto", None, None),  # a playbook that names no runtime keeps driving Docker
    ("auto", ENDPOINT, ENDPOINT),
    ("cri", None, DEFAULT_CRI_ENDPOINT),
    ("cri", ENDPOINT, ENDPOINT),
    ("docker", ENDPOINT, None),  # CONTAINER_RUNTIME_ENDPOINT set on a node that is told to use Docker
    (None, ENDPOINT, ENDPOINT),
])
def test_runtime_choice(runtime, endpoint, expected):
    assert cri_endpoint_of({"runtime": runtime, "runtime_endpoint": endpoint}) == expected


def test_the_options_and_crictl_s_variable():
    spec = connection_argument_spec()
    assert spec["runtime"]["choices"] == ["auto", "docker", "cri"] and spec["runtime"]["default"] == "auto"
    assert spec["runtime_endpoint"]["fallback"][1] == ["CONTAINER_RUNTIME_ENDPOINT"]
    assert DEFAULT_CRI_ENDPOINT == "unix:///run/containerd/containerd.sock"
