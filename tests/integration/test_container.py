"""The Dockerfile, built and run on the throwaway daemon, and the server role.

The base image comes from scripts/base-image.sh (debootstrap of Debian
bookworm, imported as debian:bookworm-slim); the build uses the classic
builder with host networking, as a user without buildx would.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import puller

from conftest import LEAKS, free_port, report
import test_cri_server

cri, cri_env = test_cri_server.cri, test_cri_server.cri_env  # the fixtures, here too

ROOT = Path(__file__).resolve().parents[2]
TAG = "bbklab/puller:test"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def docker(ground, *args, check=True, **kwargs):
    return subprocess.run(["docker", "-H", "unix://" + ground.socket] + list(args), check=check,
                          capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def image(ground):
    subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh"), "unix://" + ground.socket], check=True)
    t0 = time.monotonic()
    subprocess.run(["docker", "-H", "unix://" + ground.socket, "build", "--network", "host", "-q",
                    "--build-arg", "VERSION=" + puller.__version__, "-t", TAG, str(ROOT)],
                   check=True, env=dict(os.environ, DOCKER_BUILDKIT="0"), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    label = docker(ground, "image", "inspect", "--format", '{{index .Config.Labels "org.opencontainers.image.version"}}',
                   TAG).stdout.strip()
    assert label == puller.__version__
    size = docker(ground, "image", "inspect", "--format", "{{.Size}}", TAG).stdout.strip()
    report(ground, "image %s built in %.1fs, %.1f MB" % (TAG, time.monotonic() - t0, int(size) / 1e6))
    return TAG


def _wait_ping(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ping", timeout=1).text == "OK":
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError("no /ping answer at " + url)


def test_runs_as_the_original_was_run(ground, image):
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    docker(ground, "rm", "-f", "puller-test", check=False)
    # The original's command line, with the throwaway socket and a loopback port.
    docker(ground, "run", "-d", "--name=puller-test", "-e", "LISTEN_ADDR=127.0.0.1:%d" % port,
           "-e", "DOCKER_SOCKET=/var/run/docker.sock", "--net=host",
           "-v", "%s:/var/run/docker.sock" % ground.socket, image)
    try:
        _wait_ping(url)
        images = [ground.image(n) for n in (21, 22)]
        client = ground.client()
        for ref in images:
            try:
                client.remove_image(ref + ":latest", force=True)
            except Exception:  # pylint: disable=broad-except
                pass
        resp = requests.post(url + "/pull", json={"images": images}, timeout=120)
        assert resp.status_code == 200, resp.text
        for ref in images:
            assert client.inspect_image(ref + ":latest")["Id"]
        health = json.loads(docker(ground, "image", "inspect", "--format", "{{json .Config.Healthcheck}}",
                                   image).stdout)
        assert docker(ground, "exec", "puller-test", *health["Test"][1:], check=False).returncode == 0
        assert docker(ground, "inspect", "--format", "{{.Config.User}}", "puller-test").stdout.strip() == ""
        assert requests.get(url + "/debug/dump", timeout=10).json()["configs"]["state_dir"] == "/var/lib/puller"
        (job,) = requests.get(url + "/jobs", timeout=10).json()["jobs"]
        assert job["kind"] == "pull" and job["status"] == "succeeded"
        volumes = json.loads(docker(ground, "inspect", "--format", "{{json .Config.Volumes}}", "puller-test").stdout)
        assert "/var/lib/puller" in volumes
    finally:
        docker(ground, "stop", "--time", "30", "puller-test", check=False)
        state = json.loads(docker(ground, "inspect", "--format", "{{json .State}}", "puller-test").stdout)
        logs = docker(ground, "logs", "puller-test").stderr
        docker(ground, "rm", "-f", "puller-test", check=False)
    assert state["ExitCode"] == 0, logs
    assert "draining" in logs and "stopped" in logs


def _role(ground, tmp_path, image, port, state="present", token=""):
    playbook = tmp_path / "role.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: bbklab.puller.server\n")
    collections = tmp_path / "collections" / "ansible_collections" / "bbklab"
    if not collections.exists():
        collections.mkdir(parents=True)
        (collections / "puller").symlink_to(ROOT)
    extra = {"puller_image": image, "puller_container_name": "puller-role", "puller_state": state,
             "puller_listen": "127.0.0.1:%d" % port, "puller_docker_socket": ground.socket,
             "puller_token": token, "puller_token_path": str(tmp_path / "token"),
             "puller_mirrors": {"registry.example.com": ["mirror-a.example.com:5000", "mirror-b.example.com"]},
             "ansible_python_interpreter": sys.executable}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(playbook),
                           "-e", "@" + str(tmp_path / "vars.json")], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost")][-1]
    return int(recap.split("changed=")[1].split()[0]), proc.stdout


def test_the_image_pulls_into_a_kubernetes_node_s_containerd(ground, image, cri, cri_env):
    """The image carries the extra cri: given the node's containerd socket, it pulls there."""
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    docker(ground, "rm", "-f", "puller-cri-test", check=False)
    docker(ground, "run", "-d", "--name=puller-cri-test", "-e", "LISTEN_ADDR=127.0.0.1:%d" % port,
           "-e", "CONTAINER_RUNTIME_ENDPOINT=unix:///run/containerd/containerd.sock", "--net=host",
           "-v", "%s:/run/containerd/containerd.sock" % cri_env["PULLER_TEST_CRI_SOCKET"], image)
    try:
        _wait_ping(url)
        resp = requests.post(url + "/pull", json={"images": [ground.image(23)]}, timeout=120)
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert cri.image_status(ground.image(23) + ":latest")["id"] == row["id"]
        assert requests.get(url + "/debug/dump", timeout=10).json()["daemon"]["engine"] == "containerd"
    finally:
        docker(ground, "rm", "-f", "puller-cri-test", check=False)


def test_server_role_is_idempotent_and_removable(ground, image, tmp_path):
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    token = "Role-Token-5521"
    LEAKS.secrets.add(token)
    first, out1 = _role(ground, tmp_path, image, port, token=token)
    second, out2 = _role(ground, tmp_path, image, port, token=token)
    report(ground, "server role: first run changed=%d, second run changed=%d" % (first, second))
    assert first > 0 and second == 0
    assert token not in out1 + out2
    assert requests.get(url + "/ping").text == "OK"
    assert requests.get(url + "/debug/dump").status_code == 401
    dump = requests.get(url + "/debug/dump", headers={"Authorization": "Bearer " + token})
    assert dump.status_code == 200
    mirrors = {"registry.example.com": ["mirror-a.example.com:5000", "mirror-b.example.com"]}
    assert dump.json()["configs"]["mirrors"] == mirrors
    inspect = docker(ground, "inspect", "puller-role").stdout
    assert token not in inspect
    removed, _out = _role(ground, tmp_path, image, port, state="absent")
    again, _out = _role(ground, tmp_path, image, port, state="absent")
    assert removed > 0 and again == 0
    assert docker(ground, "inspect", "puller-role", check=False).returncode != 0
