"""Registry and daemon misbehaving: transient faults, deadlines, a daemon that goes away."""

import time

import requests

from faultproxy import Rules
from puller.core._godur import parse_duration


def test_transient_503s_are_retried_until_success(clean, server, proxy):
    proxy.reset_stats(Rules(fail_first=2, fail_status=503))
    resp = server.pull({"retry": 5, "images": [{"image": clean.image(13, registry=proxy.address)}]})
    assert resp.status_code == 200, resp.text
    (row,) = resp.json()["success"]
    assert row["retried"] > 1
    assert proxy.injected == 2


def test_connection_resets_are_retried_until_success(clean, server, proxy):
    proxy.reset_stats(Rules(reset_first=2))
    resp = server.pull({"retry": 5, "images": [{"image": clean.image(14, registry=proxy.address)}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["success"][0]["retried"] > 1


def test_retries_stop_at_the_requested_attempts(clean, server, proxy):
    proxy.reset_stats(Rules(fail_first=100, fail_status=503))
    resp = server.pull({"retry": 2, "images": [{"image": clean.image(15, registry=proxy.address)}]})
    assert resp.status_code == 500
    (row,) = resp.json()["failure"]
    assert row["retried"] == 2 and "503" in row["errmsg"]


def test_registry_slower_than_the_deadline_fails_at_the_deadline(clean, start_server, proxy):
    server = start_server("--deadline", "2s")
    proxy.reset_stats(Rules(stall=8))
    t0 = time.monotonic()
    resp = server.pull({"retry": 3, "images": [{"image": clean.image(16, registry=proxy.address)}]})
    elapsed = time.monotonic() - t0
    assert resp.status_code == 500
    (row,) = resp.json()["failure"]
    assert "timeout" in row["errmsg"] and "2s" in row["errmsg"]
    assert 1.8 <= parse_duration(row["cost"]) <= 4.0, row
    assert elapsed < 6
    # The server is still fine afterwards.
    proxy.reset_stats(Rules())
    assert server.pull({"images": [clean.image(16, registry=proxy.address)]}).status_code == 200


def test_daemon_down_is_503_and_the_server_recovers(clean, server):
    ground = clean
    ground.dockerd("stop")
    try:
        resp = server.pull({"images": [ground.image(17)]})
        assert resp.status_code == 503
        assert resp.headers["Content-Type"] == "application/json"
        assert "Docker daemon" in resp.json()["error"]
        assert requests.get(server.url + "/ping").text == "OK"
    finally:
        ground.dockerd("start")
    resp = server.pull({"images": [ground.image(17)]})
    assert resp.status_code == 200, resp.text


def test_sigterm_during_a_pull_still_answers_it(clean, start_server, proxy):
    server = start_server()
    proxy.reset_stats(Rules(delay=1.5))
    pending = server.pull_later({"concurrency": 2, "images": [clean.image(n, registry=proxy.address)
                                                              for n in (18, 19)]})
    time.sleep(0.7)
    assert proxy.manifest_requests, "the pull had not reached the registry yet"
    t0 = time.monotonic()
    assert server.stop() == 0
    stopped_after = time.monotonic() - t0
    resp = pending.result(timeout=30)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["success"]) == 2
    assert "draining 1 in-flight request" in server.log(), server.log()
    assert stopped_after < 20, "the drain waited on idle connections"


def test_server_starts_without_a_daemon_and_says_503(ground, tmp_path):
    from conftest import ServerProcess

    class NoDaemon:
        socket = str(tmp_path / "nothing-here.sock")

    server = ServerProcess(NoDaemon, tmp_path)
    try:
        assert requests.get(server.url + "/ping").text == "OK"
        resp = server.pull({"images": ["busybox"]})
        assert resp.status_code == 503 and resp.json()["field"] == "docker_socket", (resp.text, server.log())
        assert resp.headers["Retry-After"]
    finally:
        code = server.stop()
    assert code == 0, server.log()
