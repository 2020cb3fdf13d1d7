"""Which runtime the module's connection options select (pure logic)."""

import pytest

from ansible_collections.bbklab.puller.plugins.module_utils._connection import (
    DEFAULT_CRI_ENDPOINT, DEFAULT_DOCKER_HOST, connection_argument_spec, runtime_of)

ENDPOINT = "unix:///run/k3s/containerd/containerd.sock"
PODMAN = "unix:///run/podman/podman.sock"
DOCKER = DEFAULT_DOCKER_HOST
OTHER_DOCKER = "tcp://10.0.0.5:2376"


def speaking(**answers):
    """What each endpoint answers, as ``endpoint_speaks`` would say it."""
    table = {DOCKER: answers.get("docker"), DEFAULT_CRI_ENDPOINT: answers.get("containerd"),
             ENDPOINT: answers.get("k3s", "grpc"), PODMAN: "docker"}
    return table.get


@pytest.mark.parametrize("params, answers, expected", [
    # auto: a node with Docker keeps driving Docker, whatever else is there
    ({}, {"docker": "docker", "containerd": "grpc"}, (None, DOCKER)),
    # auto: a kubespray node, containerd and no Docker
    ({}, {"containerd": "grpc"}, (DEFAULT_CRI_ENDPOINT, DOCKER)),
    # auto: neither: Docker, whose error names what is missing
    ({}, {}, (None, DOCKER)),
    # auto: a Docker daemon named elsewhere is never replaced by the node's containerd
    ({"docker_host": OTHER_DOCKER}, {"containerd": "grpc"}, (None, OTHER_DOCKER)),
    # auto: the endpoint given decides, by what it speaks
    ({"runtime_endpoint": ENDPOINT}, {"docker": "docker"}, (ENDPOINT, DOCKER)),
    ({"runtime_endpoint": PODMAN}, {}, (None, PODMAN)),
    ({"runtime_endpoint": ENDPOINT}, {"k3s": None}, (ENDPOINT, DOCKER)),  # not up: the CRI's error says so
    # told which: no question asked
    ({"runtime": "cri"}, {"docker": "docker"}, (DEFAULT_CRI_ENDPOINT, DOCKER)),
    ({"runtime": "cri", "runtime_endpoint": ENDPOINT}, {}, (ENDPOINT, DOCKER)),
    ({"runtime": "docker", "runtime_endpoint": ENDPOINT}, {"containerd": "grpc"}, (None, DOCKER)),
])
def test_runtime_choice(params, answers, expected):
    params = dict({"runtime": "auto", "docker_host": DOCKER, "runtime_endpoint": None}, **params)
    assert runtime_of(params, speaks=speaking(**answers)) == expected


def test_told_which_runtime_asks_nothing():
    def never(endpoint):
        raise AssertionError("asked " + endpoint)

    assert runtime_of({"runtime": "docker", "docker_host": DOCKER}, speaks=never) == (None, DOCKER)
    assert runtime_of({"runtime": "cri", "runtime_endpoint": ENDPOINT}, speaks=never) == (ENDPOINT, None)


def test_the_options_and_crictl_s_variable():
    spec = connection_argument_spec()
    assert spec["runtime"]["choices"] == ["auto", "docker", "cri"] and spec["runtime"]["default"] == "auto"
    assert spec["runtime_endpoint"]["fallback"][1] == ["CONTAINER_RUNTIME_ENDPOINT"]
    assert DEFAULT_CRI_ENDPOINT == "unix:///run/containerd/containerd.sock"
