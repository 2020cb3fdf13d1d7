"""A server fit for the open network: HTTPS for the API, client certificates,
a registry allow-list, and a warning when a token would travel in clear text."""

import subprocess
import time

import pytest
import requests

from conftest import LEAKS, report
from slowtls import Trickle


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, a client certificate, and another CA, made by openssl."""
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key", "-out", ca + ".pem",
                 "-days", "2", "-subj", "/CN=puller test " + ca, cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                 "-subj", "/CN=" + ("127.0.0.1" if name == "server" else "puller client"), cwd=d)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return d


def test_https_api_and_plain_http_refused(certs, start_server):
    server = start_server("--https-cert", str(certs / "server.pem"), "--https-key", str(certs / "server.key"),
                          tls={"verify": str(certs / "ca.pem")})
    assert requests.get(server.url + "/ping", verify=str(certs / "ca.pem"), timeout=5).text == "OK"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url.replace("https:", "http:") + "/ping", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/ping", verify=str(certs / "other-ca.pem"), timeout=5)
    assert "Traceback" not in server.log() and "TLS handshake" in server.log()


def _https(certs, *args):
    return ("--https-cert", str(certs / "server.pem"), "--https-key", str(certs / "server.key")) + args


def test_trickled_tls_handshakes_are_closed_after_the_header_timeout(certs, start_server):
    server = start_server(*_https(certs, "--header-timeout", "1s"), tls={"verify": str(certs / "ca.pem")})
    trickle = Trickle(server.port, 50)
    try:
        counts = trickle.run(3.0, every=0.5)  # one byte each, every half second: each read is quick
        assert counts[0][1] == 50, counts  # still open while inside the header timeout
        assert counts[-1][1] == 0, counts
        assert requests.get(server.url + "/ping", verify=str(certs / "ca.pem"), timeout=5).text == "OK"
    finally:
        trickle.close()
    log = server.log()
    assert "Traceback" not in log and "TLS handshake" not in log, log[-2000:]  # timeouts are not news


def test_fresh_https_ping_answers_while_trickled_handshakes_hold_every_slot(certs, ground, start_server):
    server = start_server(*_https(certs), nofile=(256, 256), tls={"verify": str(certs / "ca.pem")})
    assert "serving at most" in server.log()
    trickle = Trickle(server.port, 300)  # more than the open-file limit allows
    try:
        trickle.run(2.0, every=0.5)
        times = []
        for _i in range(5):
            t0 = time.monotonic()
            assert requests.get(server.url + "/ping", verify=str(certs / "ca.pem"), timeout=5).text == "OK"
            times.append(time.monotonic() - t0)
        assert max(times) < 1.0, times
        assert trickle.open() < 256  # the oldest were closed to make room
    finally:
        trickle.close()
    log = server.log()
    assert "Traceback" not in log and "Too many open files" not in log, log[-2000:]
    report(ground, "HTTPS under ulimit -n 256 with 300 trickled ClientHellos: fresh /ping max "
           "%.0f ms of 5" % (max(times) * 1000))


def test_client_certificates_are_required_when_a_client_ca_is_set(certs, start_server):
    client = (str(certs / "client.pem"), str(certs / "client.key"))
    server = start_server("--https-cert", str(certs / "server.pem"), "--https-key", str(certs / "server.key"),
                          "--https-client-ca", str(certs / "ca.pem"),
                          tls={"verify": str(certs / "ca.pem"), "cert": client})
    ok = requests.get(server.url + "/jobs", verify=str(certs / "ca.pem"), cert=client, timeout=5)
    assert ok.status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/ping", verify=str(certs / "ca.pem"), timeout=5)
    assert "Traceback" not in server.log()


def test_registry_allow_list_refuses_other_registries_before_the_daemon(clean, start_server):
    server = start_server("--allow-registry", clean.registry, "--allow-registry", "*.corp.example")
    resp = server.pull({"images": [clean.image(1), clean.private_image(1)]})
    assert resp.status_code == 403 and resp.json()["field"] == "images[1].image"
    assert "not allowed" in resp.json()["error"]
    assert requests.post(server.url + "/jobs", json={"images": ["busybox"]}).status_code == 403
    assert server.pull({"images": [clean.image(1)]}).status_code == 200
    assert not clean.client().images(name=clean.private_image(1))


def test_a_token_without_tls_off_loopback_is_warned_about(start_server):
    LEAKS.secrets.add("Open-Net-Token-77")
    server = start_server(listen_host="0.0.0.0", env={"PULLER_TOKEN": "Open-Net-Token-77"})
    assert "travels in clear text" in server.log()
