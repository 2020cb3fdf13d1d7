"""bbklab.puller.prefetch run by ansible-playbook against three hosts.

Each host is ``ansible_connection=local`` with a daemon of its own and a
Python interpreter from a venv that has only the ``docker`` library: direct
mode must need nothing of ours on the managed host.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
import requests

from conftest import LEAKS, TESTENV
from faultproxy import FaultProxy, Rules
from mirrors import Registry

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PLAYBOOK = HERE / "ansible" / "prefetch.yml"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


class Fleet:
    def __init__(self, ground, tmp):
        self.ground = ground
        out = subprocess.run(["bash", str(TESTENV), "hosts", ground.dir, "3"], check=True,
                             capture_output=True, text=True).stdout.split()
        self.sockets = dict(("host%d" % (i + 1), s) for i, s in enumerate(out))
        venv = Path(ground.dir) / "host-venv"
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "docker"],
                           check=True)
        self.host_python = venv / "bin" / "python"
        collections = tmp / "collections" / "ansible_collections" / "bbklab"
        collections.mkdir(parents=True)
        (collections / "puller").symlink_to(ROOT)
        self.collections = tmp / "collections"
        self.inventory = tmp / "hosts.ini"
        self.inventory.write_text("[fleet]\n" + "".join(
            "%s ansible_connection=local docker_host=unix://%s ansible_python_interpreter=%s\n"
            % (name, sock, self.host_python) for name, sock in self.sockets.items()))
        self.tmp = tmp

    def clients(self):
        return dict((name, docker.APIClient(base_url="unix://" + s, version="auto")) for name, s in self.sockets.items())

    def clean(self):
        for client in self.clients().values():
            client.prune_images(filters={"dangling": False})

    def play(self, extra_vars, *args, **kwargs):
        results_dir = self.tmp / "results"
        if results_dir.exists():
            for f in results_dir.iterdir():
                f.unlink()
        results_dir.mkdir(exist_ok=True)
        vars_file = self.tmp / "vars.json"
        vars_file.write_text(json.dumps(dict(extra_vars, results_dir=str(results_dir))))
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(self.collections), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_LOCALHOST_WARNING="False")
        playbook = kwargs.get("playbook", PLAYBOOK)
        proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(self.inventory), str(playbook), "-e", "@" + str(vars_file)]
                              + list(args), env=env, capture_output=True, text=True, timeout=600, check=False)
        return proc

    def results(self, proc):
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return dict((f.stem, json.loads(f.read_text())) for f in (self.tmp / "results").iterdir())


@pytest.fixture(scope="module")
def fleet(ground, tmp_path_factory):
    return Fleet(ground, tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def images(ground):
    return [ground.image(n) for n in (1, 2, 3)] + [
        {"image": ground.private_image(1), "tag": "latest", "project": "private",
         "auth_config": {"username": ground.user, "password": ground.password}},
        ground.image(1)]  # a duplicate


def test_direct_mode_every_host_gets_every_image_then_nothing_changes(fleet, images):
    fleet.clean()
    proc = fleet.play({"images": images})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = fleet.results(proc)
    assert sorted(results) == ["host1", "host2", "host3"]
    for name, result in results.items():
        assert result["changed"] is True
        assert result["failure"] == [] and len(result["success"]) == 5
        assert len(result["pulled"]) == 4  # the duplicate is one reference
        assert all(v is None for v in result["diff"]["before"].values())
    for name, client in fleet.clients().items():
        for image in images[:4]:
            ref = image if isinstance(image, str) else image["image"]
            assert client.inspect_image(ref + ":latest")["Id"], (name, ref)

    again = fleet.play({"images": images, "pull": "missing"})
    assert again.returncode == 0, again.stdout[-3000:]
    for result in fleet.results(again).values():
        assert result["changed"] is False
        assert {row["status"] for row in result["success"]} == {"present"}

    always = fleet.play({"images": images})
    for result in fleet.results(always).values():
        assert result["changed"] is False
        assert {row["status"] for row in result["success"]} == {"up_to_date"}
    assert ground_password(images) not in again.stdout + always.stdout + proc.stdout


def ground_password(images):
    return [i for i in images if isinstance(i, dict)][0]["auth_config"]["password"]


def test_check_mode_pulls_nothing(fleet, images, ground):
    fleet.clean()
    fleet.clients()["host2"].pull(ground.image(2), tag="latest")
    proc = fleet.play({"images": images, "pull": "missing"}, "--check")
    assert proc.returncode == 0, proc.stdout[-3000:]
    results = fleet.results(proc)
    for name, result in results.items():
        assert result["changed"] is True
        statuses = dict((row["image"], row["status"]) for row in result["success"])
        expected_present = name == "host2"
        assert statuses[ground.image(2)] == ("present" if expected_present else "would_pull")
        assert ground.image(2) + ":latest" not in result["pulled"] or not expected_present
    counts = dict((name, len(c.images())) for name, c in fleet.clients().items())
    assert counts == {"host1": 0, "host2": 1, "host3": 0}


def test_bad_credential_fails_naming_the_image_and_hiding_the_password(fleet, ground):
    wrong = "Not-The-Password-8731"
    LEAKS.secrets.add(wrong)
    bad = {"image": ground.private_image(2), "auth_config": {"username": ground.user, "password": wrong}}
    proc = fleet.play({"images": [ground.image(4), bad]}, "-vvv", "--limit", "host1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "failed to pull 1 image(s): %s:latest (unauthorized" % ground.private_image(2) in out
    assert wrong not in out and ground.password not in out


def test_api_mode_gives_the_same_rows_as_direct_mode(fleet, images, server, ground):
    fleet.clean()
    ground.remove_all_images()
    direct = fleet.results(fleet.play({"images": images}, "--limit", "host1"))["host1"]
    api = fleet.play({"images": images, "api_url": server.url}, "--limit", "host1")
    assert api.returncode == 0, api.stdout[-3000:]
    via_api = fleet.results(api)["host1"]
    assert via_api["changed"] is True and via_api["failure"] == []

    def comparable(rows):
        return [(r["image"], r["tag"], r["project"], r["status"], r["digest"], r["id"], r["retried"]) for r in rows]

    assert comparable(via_api["success"]) == comparable(direct["success"])
    assert ground.password not in api.stdout and ground.password not in server.log()
    (job,) = requests.get(server.url + "/jobs").json()["jobs"]  # API mode made a job and polled it
    assert job["kind"] == "job" and job["status"] == "succeeded"


def test_api_mode_wait_timeout_fails_naming_the_job_which_goes_on(fleet, ground, start_server, proxy):
    proxy.reset_stats(Rules(delay=3))
    server = start_server()
    fleet.clean()
    proc = fleet.play({"images": [ground.image(5, registry=proxy.address)], "api_url": server.url,
                       "wait_timeout": 1}, "--limit", "host1")
    assert proc.returncode != 0
    (job,) = requests.get(server.url + "/jobs").json()["jobs"]
    assert "job %s" % job["id"] in proc.stdout and "goes on on the server" in proc.stdout
    deadline = time.monotonic() + 60
    while requests.get(server.url + "/jobs/" + job["id"]).json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert requests.get(server.url + "/jobs/" + job["id"]).json()["status"] == "succeeded"


def test_mirrors_on_three_hosts_warm_one_then_fan_out(fleet, ground, tmp_path):
    origin = FaultProxy(ground.registry_port, preserve_headers=True)
    cache = Registry(tmp_path, remote="http://127.0.0.1:%d" % origin.port)
    try:
        release = [ground.image(n, registry=origin.address) for n in (1, 2, 3, 4)]
        fleet.clean()
        origin.reset_stats()
        extra = {"images": release, "mirrors": {origin.address: [cache.address]}}
        results = fleet.results(fleet.play(extra, playbook=HERE / "ansible" / "mirrors.yml"))
        warmed = [name for name, result in results.items() if not result["changed"]]
        assert len(warmed) == 1, results  # the warm host had them all already: changed stays honest
        for name, result in results.items():
            assert [row["status"] for row in result["success"]] == (
                ["up_to_date"] * 4 if name in warmed else ["pulled"] * 4)
            if name not in warmed:
                assert {row["source"] for row in result["success"]} == {cache.address}
        for name, client in fleet.clients().items():
            tags = sorted(t for image in client.images() for t in image.get("RepoTags") or [])
            assert tags == sorted(image + ":latest" for image in release), (name, tags)
        again = fleet.results(fleet.play(extra, playbook=HERE / "ansible" / "mirrors.yml"))
        assert not any(result["changed"] for result in again.values())
    finally:
        cache.stop()
        origin.close()


def test_a_task_written_for_0_1_with_timeout_is_warned_of_the_new_meaning(fleet, ground):
    fleet.clean()
    proc = fleet.play({"images": [ground.image(5)]}, "--limit", "host1", playbook=HERE / "ansible" / "upgrade_0_1.yml")
    result = fleet.results(proc)["host1"]
    assert [row["status"] for row in result["success"]] == ["pulled"]
    warning = " ".join(result.get("warnings") or [])
    assert "timeout is the Docker daemon API's timeout since 0.2.0 (600s here)" in warning, result
    assert "deadline" in warning and "[WARNING]" in proc.stdout + proc.stderr

    # Setting deadline, as the upgrade note says, keeps the old meaning without a word.
    quiet = fleet.play({"images": [ground.image(5)], "pull": "missing"}, "--limit", "host1")
    assert not fleet.results(quiet)["host1"].get("warnings")
