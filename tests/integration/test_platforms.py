"""Platforms: a real multi-platform index in the local registry (two FROM scratch
images built with the classic builder's --platform, joined by docker manifest)."""

import os
import subprocess

import pytest


@pytest.fixture(scope="module")
def multi(ground, tmp_path_factory):
    """``(index reference, {platform: image ID})``."""
    d = tmp_path_factory.mktemp("multi")
    env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_CONFIG=str(d / "docker-config"))
    docker = ["docker", "-H", "unix://" + ground.socket]
    repo = "%s/multi/app" % ground.registry
    ids = {}
    for platform in ("linux/amd64", "linux/arm64"):
        (d / "payload.bin").write_bytes(os.urandom(2048))
        (d / "Dockerfile").write_text("FROM scratch\nCOPY payload.bin /payload.bin\n")
        tag = "%s:%s" % (repo, platform.split("/")[1])
        subprocess.run(docker + ["build", "-q", "--platform", platform, "-t", tag, str(d)], check=True, env=env,
                       capture_output=True)
        subprocess.run(docker + ["push", tag], check=True, env=env, capture_output=True)
        ids[platform] = subprocess.run(docker + ["image", "inspect", "--format", "{{.Id}}", tag], check=True,
                                       env=env, capture_output=True, text=True).stdout.strip()
    index = repo + ":1.0"
    subprocess.run(["docker", "manifest", "create", "--insecure", index, repo + ":amd64", repo + ":arm64"],
                   check=True, env=env, capture_output=True)
    subprocess.run(["docker", "manifest", "push", "--insecure", index], check=True, env=env, capture_output=True)
    return index, ids


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64"])
def test_each_platform_gives_its_own_image(clean, server, multi, platform):
    index, ids = multi
    resp = server.pull({"images": [{"image": index, "platform": platform}]})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["success"]
    assert row["id"] == ids[platform] and row["platform"] == platform


def test_pull_missing_pulls_again_for_another_platform(clean, server, multi):
    index, ids = multi
    assert server.pull({"images": [index], "platform": "linux/arm64"}).status_code == 200
    again = server.pull({"images": [index], "platform": "linux/arm64", "pull": "missing"}).json()["success"][0]
    assert again["status"] == "present"
    other = server.pull({"images": [index], "platform": "linux/amd64", "pull": "missing"}).json()["success"][0]
    assert other["status"] == "pulled" and other["id"] == ids["linux/amd64"]


def test_an_unknown_platform_is_permanent_and_bad_ones_are_400(clean, server, multi):
    index, _ids = multi
    resp = server.pull({"images": [index], "platform": "linux/s390x", "retry": 5})
    (row,) = resp.json()["failure"]
    assert resp.status_code == 500 and row["retried"] == 1 and "no matching manifest" in row["errmsg"]
    bad = server.pull({"images": [{"image": index, "platform": "arm64"}]})
    assert bad.status_code == 400 and bad.json()["field"] == "images[0].platform"


def test_cli_platform(clean, multi):
    import json
    import sys

    index, ids = multi
    result = subprocess.run([sys.executable, "-m", "puller", "pull", "--json", "--docker-socket", clean.socket,
                             "--platform", "linux/arm64", index], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)["success"]
    assert row["id"] == ids["linux/arm64"] and row["platform"] == "linux/arm64"
