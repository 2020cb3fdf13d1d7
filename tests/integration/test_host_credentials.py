"""Credentials already on the host: config.json, a real credential helper on PATH,
and the server's credentials file. The server ignores the host's own by default."""

import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from conftest import LEAKS, free_port

HELPER = """#!/bin/sh
# docker-credential-{name}: a credential helper as docker pull runs it.
[ "$1" = get ] || exit 1
read -r server
echo "$server" >> "{calls}"
{body}
"""


def _config(tmp_path, content):
    d = tmp_path / "docker-config"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(content))
    return str(d)


def _helper(tmp_path, name, body):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    calls = tmp_path / ("%s.calls" % name)
    path = bindir / ("docker-credential-" + name)
    path.write_text(HELPER.format(name=name, calls=calls, body=body))
    path.chmod(0o755)
    return str(bindir), calls


def _pull(ground, image, env):
    return subprocess.run([sys.executable, "-m", "puller", "pull", "--json", "--docker-socket", ground.socket, image],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, **env), check=False)


def _auths(ground):
    token = base64.b64encode(("%s:%s" % (ground.user, ground.password)).encode()).decode()
    return {"auths": {ground.auth_registry: {"auth": token}}}


def test_cli_uses_config_json_like_docker_pull(clean, tmp_path):
    image = clean.private_image(1)
    without = _pull(clean, image, {"DOCKER_CONFIG": _config(tmp_path, {})})
    assert without.returncode == 1 and "no basic auth credentials" in without.stdout
    with_auths = _pull(clean, image, {"DOCKER_CONFIG": _config(tmp_path, _auths(clean))})
    assert with_auths.returncode == 0, with_auths.stdout + with_auths.stderr
    assert clean.password not in with_auths.stdout + with_auths.stderr


def test_cli_runs_a_real_credential_helper(clean, tmp_path):
    body = 'printf \'{"ServerURL":"%%s","Username":"%s","Secret":"%s"}\' "$server"' % (clean.user, clean.password)
    bindir, calls = _helper(tmp_path, "pullertest", body)
    env = {"DOCKER_CONFIG": _config(tmp_path, {"credHelpers": {clean.auth_registry: "pullertest"}}),
           "PATH": bindir + os.pathsep + os.environ["PATH"]}
    result = _pull(clean, clean.private_image(2), env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls.read_text().split() == [clean.auth_registry]
    assert clean.password not in result.stdout + result.stderr


@pytest.mark.parametrize("helper", ["failing", "missing"])
def test_a_failing_or_missing_helper_is_a_clear_per_image_error(clean, tmp_path, helper):
    secret = "Helper-Leak-Canary-99"
    LEAKS.secrets.add(secret)
    bindir, _calls = _helper(tmp_path, "failing", 'echo "helper crashed near %s" >&2; exit 3' % secret)
    name = "failing" if helper == "failing" else "not-installed-anywhere"
    env = {"DOCKER_CONFIG": _config(tmp_path, {"credHelpers": {clean.auth_registry: name}}),
           "PATH": bindir + os.pathsep + os.environ["PATH"]}
    result = _pull(clean, clean.private_image(1), env)
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)["failure"]
    assert "credential helper for %s failed" % clean.auth_registry in row["errmsg"], row
    assert row["retried"] == 1
    if helper == "missing":
        assert "not installed" in row["errmsg"] or "PATH" in row["errmsg"]


def test_server_ignores_host_credentials_unless_asked(clean, tmp_path, start_server):
    env = {"DOCKER_CONFIG": _config(tmp_path, _auths(clean))}
    body = {"images": [clean.private_image(1)], "retry": 1}
    plain = start_server(env=env)
    assert plain.pull(body).status_code == 500
    asked = start_server("--host-credentials", env=env)
    resp = asked.pull(body)
    assert resp.status_code == 200, resp.text


def test_server_credentials_file_reloads_on_sighup(clean, tmp_path, start_server):
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({clean.auth_registry: {"username": clean.user, "password": clean.password}}))
    path.chmod(0o644)
    loose = subprocess.run([sys.executable, "-m", "puller", "serve", "--credentials-file", str(path)],
                           capture_output=True, text=True, timeout=30, check=False)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    path.chmod(0o600)
    server = start_server("--credentials-file", str(path))
    body = {"images": [clean.private_image(2)], "retry": 1}
    assert server.pull(body).status_code == 200
    wrong = "Reloaded-Wrong-Pw-3"
    LEAKS.secrets.add(wrong)
    path.write_text(json.dumps({clean.auth_registry: {"username": clean.user, "password": wrong}}))
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    clean.remove_all_images()
    resp = server.pull(body)
    assert resp.status_code == 500 and "unauthorized" in resp.json()["failure"][0]["errmsg"]
    assert "reloaded" in server.log()
    # The request's own auth_config still wins.
    own = server.pull({"images": [{"image": clean.private_image(2), "auth_config": {
        "username": clean.user, "password": clean.password}}]})
    assert own.status_code == 200


def test_sighup_without_a_credentials_file_reloads_nothing_and_kills_nothing(clean, tmp_path, start_server):
    server = start_server()
    job = requests.post(server.url + "/jobs", json={"images": [clean.image(3)]}, timeout=30).json()
    server.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert server.proc.poll() is None, server.log()
    assert "SIGHUP: nothing to reload (no --credentials-file)" in server.log()
    assert server.pull({"images": [clean.image(4)]}).status_code == 200
    assert requests.get(server.url + "/jobs/" + job["id"], timeout=30).json()["status"] == "succeeded"
    assert server.stop() == 0 and "stopped" in server.log()  # drained, as after SIGTERM


def test_a_mirror_auth_file_others_can_read_is_refused(tmp_path):
    LEAKS.secrets.add("Loose-Mirror-Pw-8")
    path = tmp_path / "mirror-auth.json"
    path.write_text(json.dumps({"mirror.example:5000": {"username": "u", "password": "Loose-Mirror-Pw-8"}}))
    path.chmod(0o644)
    started = subprocess.run([sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % free_port(),
                              "--state-dir", str(tmp_path / "state"), "--mirror-auth-file", str(path)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert started.returncode == 2, started.stderr
    assert "--mirror-auth-file" in started.stderr and "chmod 600" in started.stderr
    assert "Loose-Mirror-Pw-8" not in started.stdout + started.stderr
