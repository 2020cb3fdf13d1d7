"""``runtime: auto``: what answers on a socket, asked of the real runtimes of
the test ground (dockerd, Podman, containerd) and of sockets that are no runtime."""

import socket
import threading

import pytest

import test_cri_client
import test_podman
from puller.core._connection import SPEAKS_DOCKER, SPEAKS_GRPC, endpoint_speaks, runtime_of

cri_env, podman = test_cri_client.cri_env, test_podman.podman  # the fixtures, here too


def test_each_runtime_is_told_by_what_it_speaks(ground, podman, cri_env):
    assert endpoint_speaks("unix://" + ground.socket) == SPEAKS_DOCKER
    assert endpoint_speaks(ground.socket) == SPEAKS_DOCKER  # a path is a Unix socket
    assert endpoint_speaks("unix://" + podman) == SPEAKS_DOCKER
    assert endpoint_speaks(cri_env["PULLER_TEST_CRI_ENDPOINT"]) == SPEAKS_GRPC


@pytest.fixture
def listener(tmp_path):
    """A Unix socket that accepts and then says nothing, or hangs up at once."""
    path = str(tmp_path / "other.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(4)
    behaviour = {"hang_up": False}
    held = []

    def serve():
        while True:
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            if behaviour["hang_up"]:
                conn.close()
            else:
                held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield path, behaviour
    server.close()
    for conn in held:
        conn.close()


def test_what_is_no_runtime_speaks_nothing(tmp_path, listener):
    path, behaviour = listener
    assert endpoint_speaks(str(tmp_path / "absent.sock")) is None
    assert endpoint_speaks(path, timeout=0.5) is None  # silent
    behaviour["hang_up"] = True
    assert endpoint_speaks(path) is None
    assert endpoint_speaks("tcp://127.0.0.1:2375") is None  # only Unix sockets are asked


def test_auto_picks_the_runtime_that_answers(ground, podman, cri_env):
    cri = cri_env["PULLER_TEST_CRI_ENDPOINT"]
    docker = "unix://" + ground.socket
    auto = {"runtime": "auto", "docker_host": docker}
    assert runtime_of(dict(auto, runtime_endpoint=cri)) == (cri, docker)
    assert runtime_of(dict(auto, runtime_endpoint="unix://" + podman)) == (None, "unix://" + podman)
    assert runtime_of(dict(auto, runtime_endpoint=None)) == (None, docker)
