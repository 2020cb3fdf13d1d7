"""The host's credentials going wrong, with real helper scripts on PATH and real
config.json files: a helper that hangs, fails or answers nonsense, and a
malformed config.json are each the error of the images they concern, through
the server (``--host-credentials``) and the CLI; a hanging helper dies with
its image's deadline or its job's cancel."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import LEAKS

HELPER = """#!/bin/sh
# docker-credential-{name}, run as docker pull runs it.
[ "$1" = get ] || exit 1
read -r server
echo "$server" >> "{calls}"
echo "{secret} on stderr" >&2
{body}
"""
SECRET = "Helper-Stdout-Canary-41"
CONFIG_SECRET = "Config-Auth-Canary-52"
LEAKS.secrets.update({SECRET, CONFIG_SECRET, base64.b64encode(("nocolon" + CONFIG_SECRET).encode()).decode()})

BAD_OUTPUT = {
    "not-json": ('echo "not json {\\"Username\\": \\"u\\", \\"Secret\\": \\"%s\\""' % SECRET,
                 "answered with something that is not JSON"),
    "empty-object": ("echo '{}'", "answered without a Username and Secret"),
    "50MB": ("head -c 52428800 /dev/zero | tr '\\0' x", "answered with more than 1024 KiB"),
}
BAD_CONFIG = {
    "list": (["not", "an", "object"], "it is not a JSON object"),
    "auth-not-base64": ({"auths": {"{registry}": {"auth": "abc"}}}, "its auth is not valid base64"),
    "auth-without-colon": ({"auths": {"{registry}": {"auth": base64.b64encode(
        ("nocolon" + CONFIG_SECRET).encode()).decode()}}}, "its auth does not decode to user:password"),
    "auth-a-number": ({"auths": {"{registry}": {"auth": 12345}}}, "its auth is not a string"),
}


def _env(tmp_path, config, name=None, body=None):
    """DOCKER_CONFIG (and PATH, with ``docker-credential-<name>`` running ``body``)."""
    conf = tmp_path / "docker-config"
    conf.mkdir(exist_ok=True)
    (conf / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(conf)}
    if name:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        path = bindir / ("docker-credential-" + name)
        path.write_text(HELPER.format(name=name, calls=tmp_path / (name + ".calls"), secret=SECRET, body=body))
        path.chmod(0o755)
        env["PATH"] = str(bindir) + os.pathsep + os.environ["PATH"]
    return env


def _bad_config(ground, case):
    content, problem = BAD_CONFIG[case]
    return json.loads(json.dumps(content).replace("{registry}", ground.auth_registry)), problem


def _cli(ground, images, env, *args):
    return subprocess.run([sys.executable, "-m", "puller", "pull", "--json", "--docker-socket", ground.socket]
                          + list(args) + list(images), capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **env), check=False)


def _running(marker):
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return out.split()


def _wait_for(predicate, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _marker(tag):
    """A ``sleep`` argument nobody else runs: pgrep finds exactly this test's helper."""
    return "3600.%d%d" % (os.getpid(), tag)


def _store_text(server):
    return b"".join(p.read_bytes() for p in Path(server.state_dir).iterdir() if p.is_file()).decode("latin-1")


def _rows(report):
    return {row["image"]: row for row in report["success"] + report["failure"]}


# -- a helper that hangs ------------------------------------------------------------------------

def test_a_hanging_helper_ends_with_the_image_deadline(clean, tmp_path, start_server):
    marker = _marker(1)
    env = _env(tmp_path, {"credHelpers": {clean.auth_registry: "hang"}}, "hang", "sleep " + marker)
    server = start_server("--host-credentials", env=env)
    private, public = clean.private_image(1), clean.image(1)
    t0 = time.monotonic()
    resp = server.pull({"images": [private, public], "timeout": "8s", "concurrency": 2})
    took = time.monotonic() - t0
    assert resp.status_code == 500, resp.text
    rows = _rows(resp.json())
    assert rows[public]["status"] == "pulled"
    assert rows[private]["status"] == "failed"
    assert rows[private]["errmsg"].startswith("timeout: the host's credential helper for %s" % clean.auth_registry)
    assert "docker-credential-hang did not answer within the image's deadline" in rows[private]["errmsg"]
    assert 7.5 < took < 11, took
    assert _wait_for(lambda: not _running(marker), 3), "the helper outlived its image"


def test_cancelling_a_job_kills_its_helper(clean, tmp_path, start_server):
    marker = _marker(2)
    env = _env(tmp_path, {"credHelpers": {clean.auth_registry: "hang"}}, "hang", "sleep " + marker)
    server = start_server("--host-credentials", env=env)
    job = requests.post(server.url + "/jobs", json={"images": [clean.private_image(1)]}, timeout=30).json()
    assert _wait_for(lambda: _running(marker), 15), "the helper never ran"
    t0 = time.monotonic()
    resp = requests.delete(server.url + "/jobs/" + job["id"], timeout=30)
    took = time.monotonic() - t0
    server.bodies.append(resp.text)
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled", resp.text
    assert took < 3, took
    assert _wait_for(lambda: not _running(marker), 3), "the helper outlived its cancelled job"


def test_the_cli_kills_a_hanging_helper_at_its_deadline_and_on_ctrl_c(clean, tmp_path):
    marker = _marker(3)
    env = _env(tmp_path, {"credHelpers": {clean.auth_registry: "hang"}}, "hang", "sleep " + marker)
    result = _cli(clean, [clean.private_image(1)], env, "--deadline", "3s")
    assert result.returncode == 1, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)["failure"]
    assert "did not answer within the image's deadline" in row["errmsg"]
    assert _wait_for(lambda: not _running(marker), 3)
    cli = subprocess.Popen([sys.executable, "-m", "puller", "pull", "--json", "--docker-socket", clean.socket,
                            clean.private_image(1)], env=dict(os.environ, **env), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _running(marker), 15), "the helper never ran"
        cli.send_signal(signal.SIGINT)
        out, _err = cli.communicate(timeout=10)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert cli.returncode == 130
    assert json.loads(out)["failure"][0]["status"] == "cancelled"
    assert _wait_for(lambda: not _running(marker), 3), "the helper outlived the interrupted CLI"


# -- a helper that answers nonsense -------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_OUTPUT))
def test_bad_helper_output_fails_only_its_images_through_the_server(clean, tmp_path, start_server, case):
    body, problem = BAD_OUTPUT[case]
    env = _env(tmp_path, {"credHelpers": {clean.auth_registry: "bad"}}, "bad", body)
    server = start_server("--host-credentials", env=env)
    private, public = clean.private_image(1), clean.image(1)
    resp = server.pull({"images": [private, public], "concurrency": 2})
    assert resp.status_code == 500, resp.text
    rows = _rows(resp.json())
    assert rows[public]["status"] == "pulled"
    message = rows[private]["errmsg"]
    assert message == "the host's credential helper for %s failed: docker-credential-bad %s" % (
        clean.auth_registry, problem)
    assert SECRET not in resp.text + server.log() + _store_text(server)


@pytest.mark.parametrize("case", sorted(BAD_OUTPUT))
def test_bad_helper_output_fails_only_its_images_through_the_cli(clean, tmp_path, case):
    body, problem = BAD_OUTPUT[case]
    env = _env(tmp_path, {"credHelpers": {clean.auth_registry: "bad"}}, "bad", body)
    result = _cli(clean, [clean.private_image(1), clean.image(1)], env)
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [row["image"] for row in report["success"]] == [clean.image(1)]
    (row,) = report["failure"]
    assert problem in row["errmsg"] and clean.auth_registry in row["errmsg"]
    assert SECRET not in result.stdout + result.stderr


# -- a malformed config.json ------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_a_malformed_config_json_fails_only_its_images_through_the_server(clean, tmp_path, start_server, case):
    config, problem = _bad_config(clean, case)
    server = start_server("--host-credentials", env=_env(tmp_path, config))
    private, public, own = clean.private_image(1), clean.image(1), clean.private_image(2)
    resp = server.pull({"images": [private, public, {"image": own, "auth_config": {
        "username": clean.user, "password": clean.password}}], "concurrency": 3})
    assert resp.status_code == 500, resp.text
    rows = _rows(resp.json())
    assert rows[own]["status"] == "pulled"  # its own credentials: nothing looked up
    failed = [private] + ([public] if case == "list" else [])
    for image in failed:
        registry = image.split("/", 1)[0]
        assert rows[image]["status"] == "failed"
        assert rows[image]["errmsg"].startswith(
            "no credentials for %s: the host's Docker config is malformed: " % registry), rows[image]
        assert problem in rows[image]["errmsg"] and len(rows[image]["errmsg"]) <= 200
    if case != "list":
        assert rows[public]["status"] == "pulled"
    assert CONFIG_SECRET not in resp.text + server.log() + _store_text(server)


@pytest.mark.parametrize("case", sorted(BAD_CONFIG))
def test_a_malformed_config_json_fails_only_its_images_through_the_cli(clean, tmp_path, case):
    config, problem = _bad_config(clean, case)
    result = _cli(clean, [clean.private_image(1), clean.image(1)], _env(tmp_path, config))
    assert result.returncode == 1, result.stdout + result.stderr
    rows = _rows(json.loads(result.stdout))
    assert problem in rows[clean.private_image(1)]["errmsg"]
    assert rows[clean.image(1)]["status"] == ("failed" if case == "list" else "pulled")
    assert CONFIG_SECRET not in result.stdout + result.stderr


def test_a_server_ignoring_the_host_credentials_ignores_a_malformed_config_json(clean, tmp_path, start_server):
    config, _problem = _bad_config(clean, "list")
    server = start_server(env=_env(tmp_path, config))
    resp = server.pull({"images": [clean.image(1)]})
    assert resp.status_code == 200, resp.text
