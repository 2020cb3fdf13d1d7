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
