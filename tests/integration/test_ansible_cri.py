"""bbklab.puller.prefetch run by ansible-playbook on a Kubernetes node: the
test ground's private containerd through its CRI endpoint, as kubespray's
download step would pull a cluster's images.

The node's Python is a venv with only grpcio and protobuf: direct mode over
the CRI must need neither the Docker SDK nor anything of ours there.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import report
from test_cri_client import ctr_images, registry_digest
import test_cri_server

cri, cri_env = test_cri_server.cri, test_cri_server.cri_env  # the fixtures, here too

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAYBOOK = HERE / "ansible" / "kubespray_download.yml"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
# kubespray's names for a cluster's images, each a fixture image here
COMPONENTS = ("kube_apiserver", "kube_controller_manager", "kube_scheduler", "kube_proxy", "coredns", "pause")


def _venv(path, *packages):
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        if packages:
            subprocess.run([str(path / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
                           + list(packages), check=True)
    return path / "bin" / "python"


class Node:
    """A managed node (``ansible_connection=local``) with a Python of its own."""

    def __init__(self, ground, tmp):
        self.cri_python = _venv(Path(ground.dir) / "cri-host-venv", "grpcio", "protobuf")
        self.bare_python = _venv(Path(ground.dir) / "bare-host-venv")
        collections = tmp / "collections" / "ansible_collections" / "bbklab"
        collections.mkdir(parents=True)
        (collections / "puller").symlink_to(ROOT)
        self.tmp = tmp

    def play(self, extra_vars, python=None):
        results = self.tmp / "results"
        results.mkdir(exist_ok=True)
        for f in results.iterdir():
            f.unlink()
        inventory = self.tmp / "hosts.ini"
        inventory.write_text("node ansible_connection=local ansible_python_interpreter=%s\n"
                             % (python or self.cri_python))
        (self.tmp / "vars.json").write_text(json.dumps(dict(extra_vars, results_dir=str(results))))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.tmp / "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="False")
        env.pop("CONTAINER_RUNTIME_ENDPOINT", None)
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(PLAYBOOK), "-e", "@%s" % (self.tmp / "vars.json")],
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads((results / "node.json").read_text())


@pytest.fixture(scope="module")
def node(ground, tmp_path_factory):
    return Node(ground, tmp_path_factory.mktemp("node"))


def downloads(ground, registry):
    found = {name: {"enabled": True, "container": True, "repo": ground.image(14 + i, registry=registry),
                    "tag": "latest"} for i, name in enumerate(COMPONENTS)}
    found["nodelocaldns"] = {"enabled": False, "container": True, "repo": ground.image(23), "tag": "latest"}
    found["kubeadm"] = {"enabled": True, "container": False, "file": True, "url": "https://dl.k8s.io/kubeadm"}
    return found


def test_the_node_python_has_no_docker_sdk(node):
    for python in (node.cri_python, node.bare_python):
        assert subprocess.run([str(python), "-c", "import docker"], capture_output=True, check=False).returncode != 0
    assert subprocess.run([str(node.cri_python), "-c", "import grpc, google.protobuf"], check=False).returncode == 0


def test_kubespray_download_step_pulls_into_containerd_then_nothing_changes(node, cri, cri_env, ground, proxy):
    extra = {"downloads": downloads(ground, proxy.address), "cri_endpoint": cri_env["PULLER_TEST_CRI_ENDPOINT"]}
    first = node.play(extra)
    assert first["changed"] is True and first["failure"] == [], first
    assert [row["project"] for row in first["success"]] == list(COMPONENTS)
    assert {row["status"] for row in first["success"]} == {"pulled"}
    listed = ctr_images(cri_env)
    for n, row in enumerate(first["success"]):
        image = ground.image(14 + n, registry=proxy.address)
        assert row["digest"] == registry_digest(ground.registry, "fixture/img-%02d" % (14 + n))
        assert cri.image_status(image + ":latest")["id"] == row["id"] and image + ":latest" in listed
    assert not any("img-23" in name for name in listed)  # not enabled
    asked = len(proxy.manifest_requests)
    proxy.reset_stats()
    again = node.play(extra)
    assert again["changed"] is False and {row["status"] for row in again["success"]} == {"present"}, again
    assert again["pulled"] == [] and proxy.manifest_requests == []  # the registry was not asked at all
    report(ground, "prefetch on a CRI node (grpcio+protobuf only): 6 images pulled (%d manifest requests), "
           "second run changed nothing with 0 requests" % asked)


def test_cri_mode_names_what_it_cannot_do_or_lacks(node, cri, cri_env, ground):
    base = {"downloads": {"pause": {"enabled": True, "container": True, "repo": ground.image(19), "tag": "latest"}},
            "cri_endpoint": cri_env["PULLER_TEST_CRI_ENDPOINT"], "expect_failure": True}
    bare = node.play(base, python=node.bare_python)
    assert bare.get("failed") and "Failed to import the required Python library (grpcio and protobuf)" in \
        bare["msg"] and "CRI runtime at " in bare["msg"], bare
    docker = node.play(dict(base, runtime="docker"))  # the node's Python has no Docker SDK
    assert docker.get("failed") and "required Python library (docker)" in docker["msg"], docker
    mirrors = node.play(dict(base, mirrors={ground.registry: ["localhost:9"]}))
    assert mirrors.get("failed") and mirrors["msg"].startswith("mirrors: ") and \
        "bbklab.puller.cri_mirrors" in mirrors["msg"], mirrors
    gone = node.play(dict(base, cri_endpoint="unix://%s/nothing.sock" % ground.dir))
    assert gone.get("failed") and "CRI runtime at unix://" in gone["msg"], gone
    assert cri.list_images() == []


def test_auto_pulls_into_what_answers_at_the_endpoint(node, cri, cri_env, ground):
    """runtime: auto asks the socket: a Docker daemon named as runtime_endpoint is driven as one."""
    image = ground.image(20)
    client = ground.client()
    for tag in client.images(name=image, quiet=True):
        client.remove_image(tag, force=True)
    play = {"downloads": {"pause": {"enabled": True, "container": True, "repo": image, "tag": "latest"}},
            "cri_endpoint": "unix://" + ground.socket}
    found = node.play(play, python=sys.executable)  # this Python has the Docker SDK
    assert found["failure"] == [] and [row["status"] for row in found["success"]] == ["pulled"], found
    assert client.inspect_image(image + ":latest")["Id"] == found["success"][0]["id"]
    assert cri.list_images() == []  # containerd was not asked
    lacking = node.play(dict(play, expect_failure=True))  # the node's Python has no Docker SDK
    assert lacking.get("failed") and "required Python library (docker)" in lacking["msg"], lacking
