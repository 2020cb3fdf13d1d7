"""A daemon behind TLS on a loopback TCP port (--tlsverify, certificates made by
openssl in the test ground), reached with the docker CLI's flags and variables,
with REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE set as on many corporate hosts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import TESTENV

BUNDLE = {"REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
          "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}


@pytest.fixture(scope="module")
def tls_daemon(ground):
    port, certs = subprocess.run(["bash", str(TESTENV), "tls", ground.dir], check=True, capture_output=True,
                                 text=True).stdout.split()
    return "tcp://127.0.0.1:%s" % port, Path(certs)


def _flags(url, certs, ca="ca.pem", client=True):
    flags = ["--docker-socket", url, "--tlsverify", "--tlscacert", str(certs / ca)]
    if client:
        flags += ["--tlscert", str(certs / "cert.pem"), "--tlskey", str(certs / "key.pem")]
    return flags


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "puller", "pull"] + list(args), capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **BUNDLE, **(env or {})), check=False)


def test_server_pulls_through_a_tls_daemon_and_names_tls_problems(ground, tls_daemon, start_server):
    url, certs = tls_daemon
    server = start_server(*_flags(url, certs), env=BUNDLE)
    resp = server.pull({"images": [ground.image(3)]})
    assert resp.status_code == 200, resp.text
    for flags in (_flags(url, certs, ca="another-ca.pem"), _flags(url, certs, client=False)):
        bad = start_server(*flags, env=BUNDLE)
        resp = bad.pull({"images": [ground.image(3)]})
        assert resp.status_code == 503 and "TLS failed" in resp.json()["error"], resp.text
    assert requests.get(server.url + "/debug/dump").json()["configs"]["tlsverify"] is True


def test_cli_with_flags_or_the_docker_cli_variables(ground, tls_daemon):
    url, certs = tls_daemon
    assert _cli(*(_flags(url, certs) + [ground.image(4)])).returncode == 0
    env = {"DOCKER_HOST": url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    assert _cli(ground.image(5), env=env).returncode == 0
    wrong = _cli(*(_flags(url, certs, ca="another-ca.pem") + [ground.image(4)]))
    assert wrong.returncode == 3 and "TLS failed" in wrong.stderr and "CERTIFICATE_VERIFY_FAILED" in wrong.stderr
    missing = _cli(*(_flags(url, certs, client=False) + [ground.image(4)]))
    assert missing.returncode == 3 and "TLS failed" in missing.stderr


def _module(tmp_path, args, env=None):
    import json

    root = Path(__file__).resolve().parents[2]
    collections = tmp_path / "collections" / "ansible_collections" / "bbklab"
    if not collections.exists():
        collections.mkdir(parents=True)
        (collections / "puller").symlink_to(root)
    return subprocess.run([str(Path(sys.executable).with_name("ansible")), "localhost", "-c", "local", "-m",
                           "bbklab.puller.prefetch", "-a", json.dumps(args),
                           "-e", "ansible_python_interpreter=" + sys.executable],
                          capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "collections"),
                                   ANSIBLE_LOCALHOST_WARNING="False", ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
                                   **BUNDLE, **(env or {})))


def test_module_with_community_docker_option_names(ground, tls_daemon, tmp_path):
    url, certs = tls_daemon
    ok = _module(tmp_path, {"images": [ground.image(6)], "docker_url": url, "tls_verify": True,
                            "cacert_path": str(certs / "ca.pem"), "cert_path": str(certs / "cert.pem"),
                            "key_path": str(certs / "key.pem")})
    assert ok.returncode == 0, ok.stdout[-2000:]
    from_env = _module(tmp_path, {"images": [ground.image(7)]},
                       env={"DOCKER_HOST": url, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)})
    assert from_env.returncode == 0, from_env.stdout[-2000:]
    wrong = _module(tmp_path, {"images": [ground.image(6)], "docker_host": url, "validate_certs": True,
                               "ca_path": str(certs / "another-ca.pem"), "client_cert": str(certs / "cert.pem"),
                               "client_key": str(certs / "key.pem")})
    assert wrong.returncode != 0 and "TLS failed" in wrong.stdout, wrong.stdout[-2000:]
