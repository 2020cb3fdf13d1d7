"""The role ``bbklab.puller.cri_mirrors`` run by ansible-playbook against the
test ground's containerd (its certs.d), then CRI pulls through
``puller serve --runtime-endpoint``: the node's mirrors serve the image
under the origin's name, and the origin does when the mirror is gone."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import report
from criwatch import empty_store
from faultproxy import FaultProxy, Rules
from mirrors import Registry, push
from test_cri_client import ctr_images, registry_digest
import test_cri_server

cri, cri_env = test_cri_server.cri, test_cri_server.cri_env  # the fixtures, here too

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAYBOOK = HERE / "ansible" / "cri_mirrors.yml"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]+$")


def play(tmp, extra_vars):
    collections = tmp / "collections" / "ansible_collections" / "bbklab"
    if not collections.exists():
        collections.mkdir(parents=True)
        (collections / "puller").symlink_to(ROOT)
    (tmp / "hosts.ini").write_text("node ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    (tmp / "vars.json").write_text(json.dumps(extra_vars))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp / "collections"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="False")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp / "hosts.ini"), str(PLAYBOOK), "-e", "@%s" % (tmp / "vars.json")],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return re.search(r"node\s*:\s*ok=\d+\s+changed=(\d+)", proc.stdout).group(1)


@pytest.fixture
def origin(ground, cri_env):
    """The open registry under a name of its own (so the hosts.toml written
    here concerns no other test), counting blob requests."""
    proxy = FaultProxy(ground.registry_port, preserve_headers=True)
    proxy.reset_stats(Rules(pattern=BLOB_PATH))
    yield proxy
    proxy.close()
    shutil.rmtree(Path(cri_env["PULLER_TEST_CRI_CERTS_D"], proxy.address), ignore_errors=True)


def test_the_role_points_containerd_at_a_mirror_and_the_origin_is_the_fallback(
        cri, cri_env, ground, origin, start_server, tmp_path):
    mirror = Registry(tmp_path / "mirror")
    front = FaultProxy(mirror.port, preserve_headers=True)  # counts what the mirror serves
    try:
        path = "fixture/img-03"
        copied = push(ground, ground.image(3) + ":latest", "%s/%s:latest" % (mirror.address, path))
        assert copied == registry_digest(ground.registry, path)  # a true copy: the same digest
        certs_d = cri_env["PULLER_TEST_CRI_CERTS_D"]
        extra = {"puller_mirrors": {origin.address: [front.address]}, "puller_containerd_certs_dir": certs_d}
        assert play(tmp_path, extra) != "0"
        hosts_toml = Path(certs_d, origin.address, "hosts.toml").read_text()
        assert 'server = "http://%s"' % origin.address in hosts_toml
        assert '[host."http://%s"]' % front.address in hosts_toml and 'capabilities = ["pull"]' in hosts_toml
        assert play(tmp_path, extra) == "0"  # a second run changes nothing

        server = start_server(runtime="cri")
        image = "%s/%s" % (origin.address, path)
        front.reset_stats(Rules(pattern=BLOB_PATH))
        origin.reset_stats(Rules(pattern=BLOB_PATH))
        resp = server.pull({"images": [image]})
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert row["digest"] == copied and "source" not in row
        status = cri.image_status(image + ":latest")
        assert status["repo_tags"] == [image + ":latest"], status  # the canonical name, and only it
        assert not any(front.address in name for name in ctr_images(cri_env))
        served_by_mirror, by_origin = front.matched, origin.matched
        assert served_by_mirror >= 4 and by_origin == 0, (served_by_mirror, by_origin)  # 3 layers and the config
        assert [m for m, _p in front.manifest_requests] == ["GET"]  # the manifest by digest
        # The tag is resolved at the origin (a mirror has no "resolve" capability).
        assert ("HEAD", "/v2/%s/manifests/latest" % path) in origin.manifest_requests

        empty_store(cri, cri_env)
        front.close()  # the mirror is gone: containerd falls back to the origin
        resp = server.pull({"images": [image]})
        assert resp.status_code == 200, resp.text
        assert resp.json()["success"][0]["digest"] == copied and origin.matched >= 4
        assert cri.image_status(image + ":latest")["repo_tags"] == [image + ":latest"]
        report(ground, "cri mirrors role: %d blobs from the mirror, %d from the origin; mirror gone: %d from the "
               "origin" % (served_by_mirror, by_origin, origin.matched))

        # A registry mapped to no mirrors loses the file.
        assert play(tmp_path, dict(extra, puller_mirrors={origin.address: []})) == "1"
        assert not Path(certs_d, origin.address, "hosts.toml").exists()
    finally:
        front.close()
        mirror.stop()


def test_fan_out_by_digest_on_a_cri_node_with_the_origin_down(cri, cri_env, ground, origin, start_server, tmp_path):
    """A preheated site as the node's mirror (the role's hosts.toml): containerd
    fetches origin/path@digest from the site by digest; the origin is not asked."""
    site = Registry(tmp_path / "site")
    try:
        path = "fixture/img-05"
        digest = push(ground, ground.image(5) + ":latest", "%s/%s:latest" % (site.address, path))
        certs_d = cri_env["PULLER_TEST_CRI_CERTS_D"]
        assert play(tmp_path, {"puller_mirrors": {origin.address: [site.address]},
                               "puller_containerd_certs_dir": certs_d}) != "0"
        origin.reset_stats(Rules(pattern=re.compile(r".*"), reset_first=10 ** 9))  # the origin refuses everything
        server = start_server(runtime="cri")
        image = "%s/%s" % (origin.address, path)
        resp = server.pull({"images": [{"image": image, "tag": "latest", "digest": digest}]})
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert (row["digest"], row["status"]) == (digest, "pulled"), row
        assert "records no tag" in row["note"] and "%s@%s" % (image, digest) in row["note"], row
        status = cri.image_status("%s@%s" % (image, digest))
        assert status["id"] == row["id"] and status["repo_digests"] == ["%s@%s" % (image, digest)], status
        assert origin.manifest_requests == [] and origin.matched == 0  # not one request reached the origin
        again = server.pull({"images": [{"image": image, "tag": "latest", "digest": digest}], "pull": "missing"})
        assert again.json()["success"][0]["status"] == "present", again.text
        report(ground, "cri fan-out by digest: pulled from the site through hosts.toml, 0 origin requests")
    finally:
        site.stop()
        assert play(tmp_path, {"puller_mirrors": {origin.address: []},
                               "puller_containerd_certs_dir": cri_env["PULLER_TEST_CRI_CERTS_D"]}) in ("0", "1")
