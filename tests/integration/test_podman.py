"""Podman's Docker-compatible API (``podman system service``) as a second daemon:
the seed-shaped request, a missing image, wrong credentials, shared pulls,
``pull: missing``, and the module in direct mode."""

import subprocess

import docker
import pytest
import requests

from conftest import LEAKS, TESTENV
from faultproxy import Rules


@pytest.fixture(scope="module")
def podman(ground):
    sock = subprocess.run(["bash", str(TESTENV), "podman", ground.dir], check=True, capture_output=True,
                          text=True).stdout.split()[-1]
    return sock


@pytest.fixture
def empty_podman(podman):
    client = docker.APIClient(base_url="unix://" + podman, version="auto")
    for image in client.images():
        client.remove_image(image["Id"], force=True)
    return podman


def test_seed_shaped_request_against_podman(ground, empty_podman, start_server):
    server = start_server("--docker-socket", empty_podman)
    assert requests.get(server.url + "/debug/dump").json()["daemon"]["engine"] == "podman"
    images = [{"image": ground.image(n), "tag": "latest", "project": "p%d" % n} for n in (1, 2)]
    images.append({"image": ground.private_image(1), "tag": "latest", "project": "priv",
                   "auth_config": {"username": ground.user, "password": ground.password}})
    resp = server.pull({"concurrency": 3, "retry": 3, "images": images})
    assert resp.status_code == 200, resp.text
    for row in resp.json()["success"]:
        assert row["status"] == "pulled" and row["retried"] == 1
        assert row["digest"].startswith("sha256:") and row["id"].startswith("sha256:")


def test_missing_image_and_wrong_credentials_fail_once(ground, empty_podman, start_server):
    server = start_server("--docker-socket", empty_podman)
    wrong = "Podman-Wrong-Pw-5"
    LEAKS.secrets.add(wrong)
    resp = server.pull({"retry": 3, "images": [ground.image(99), {"image": ground.private_image(2), "auth_config": {
        "username": ground.user, "password": wrong}}]})
    assert resp.status_code == 500
    missing, denied = resp.json()["failure"]
    assert missing["retried"] == 1 and "manifest unknown" in missing["errmsg"]
    assert denied["retried"] == 1 and "unauthorized" in denied["errmsg"] and wrong not in resp.text


def test_shared_pulls_and_pull_missing_on_podman(ground, empty_podman, start_server, proxy):
    proxy.reset_stats(Rules(delay=0.5))
    server = start_server("--docker-socket", empty_podman)
    image = ground.image(3, registry=proxy.address)
    pending = [server.pull_later({"images": [image, image]}) for _i in range(3)]
    assert all(p.result(60).status_code == 200 for p in pending)
    assert server.log().count("pull %s:latest attempt 1/" % image) == 1
    again = server.pull({"images": [image], "pull": "missing"}).json()["success"][0]
    assert again["status"] == "present" and again["retried"] == 0


def test_module_direct_mode_against_podman(ground, empty_podman, tmp_path):
    import json
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    collections = tmp_path / "collections" / "ansible_collections" / "bbklab"
    collections.mkdir(parents=True)
    (collections / "puller").symlink_to(root)
    args = json.dumps({"images": [ground.image(4)], "docker_host": "unix://" + empty_podman})
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-m",
                           "bbklab.puller.prefetch", "-a", args, "-e", "ansible_python_interpreter=" + sys.executable],
                          capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
                                   ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "CHANGED" in proc.stdout and ground.image(4) in proc.stdout
