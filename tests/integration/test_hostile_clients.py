"""Connections that send nothing, send their head slowly, or sit idle.

Before: about 1 000 of them held every connection slot; a fresh ``/ping``
got no answer for a minute, and under an open-file limit of 256 the accept
loop logged EMFILE tracebacks while admitted pulls failed with "Too many
open files".
"""

import time

import requests

import rawhttp
from conftest import report
from faultproxy import Rules

PING = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"


def _hostile(port, silent=0, partial=0, idle=0):
    socks = []
    for _i in range(silent):  # connect and say nothing
        socks.append(rawhttp.connect(port))
    for _i in range(partial):  # start a head and never finish it
        sock = rawhttp.connect(port)
        sock.sendall(b"POST /pull HTTP/1.1\r\nHost: x\r\nContent-")
        socks.append(sock)
    for _i in range(idle):  # one keep-alive /ping, then silence
        sock = rawhttp.connect(port)
        sock.sendall(PING)
        assert rawhttp.read_response(sock)[0] == 200
        socks.append(sock)
    return socks


def _close(socks):
    for sock in socks:
        sock.close()


def _ping_times(server, count=12):
    times = []
    for _i in range(count):
        t0 = time.monotonic()
        assert requests.get(server.url + "/ping", timeout=5).text == "OK"
        times.append(time.monotonic() - t0)
    return times


def _clean_log(server):
    log = server.log()
    assert "Traceback" not in log and "Too many open files" not in log, log[-3000:]


def test_fresh_ping_answers_within_a_second_while_1100_hostile_connections_are_open(clean, server):
    socks = _hostile(server.port, silent=400, partial=400, idle=300)
    try:
        times = _ping_times(server)
        assert max(times) < 1.0, times
        images = [clean.image(n) for n in range(1, 21)]
        resp = server.pull({"images": images, "concurrency": 10})
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["success"]) == 20
    finally:
        _close(socks)
    report(clean, "1 100 hostile connections: fresh /ping max %.0f ms of 12; a 20-image pull beside them: ok"
           % (max(times) * 1000))
    _clean_log(server)


def test_slow_and_idle_connections_are_closed_after_their_timeouts(start_server):
    server = start_server("--header-timeout", "1s", "--idle-timeout", "2s")
    silent, partial, idle = (_hostile(server.port, **{kind: 20}) for kind in ("silent", "partial", "idle"))
    try:
        t0 = time.monotonic()
        assert all(rawhttp.closed_within(s, 3.0) for s in silent + partial)
        assert all(rawhttp.closed_within(s, 3.0) for s in idle)
        assert time.monotonic() - t0 < 5
    finally:
        _close(silent + partial + idle)
    _clean_log(server)


def test_open_file_limit_of_256_fails_no_admitted_pull(clean, start_server):
    server = start_server(nofile=(256, 256))
    assert "serving at most" in server.log()
    socks = _hostile(server.port, silent=150, partial=100, idle=50)
    try:
        assert max(_ping_times(server, 5)) < 1.0
        images = [clean.image(n) for n in range(1, 21)]
        resp = server.pull({"images": images, "concurrency": 20})
        assert resp.status_code == 200, resp.text
    finally:
        _close(socks)
    _clean_log(server)


def test_when_every_connection_is_in_a_request_a_new_one_gets_a_json_503(clean, start_server, proxy):
    proxy.reset_stats(Rules(delay=3))
    server = start_server("--connections", "2")
    pending = [server.pull_later({"images": [clean.image(n, registry=proxy.address)]}) for n in (4, 5)]
    time.sleep(1.0)
    status, _headers, body = rawhttp.exchange(server.port, PING)
    assert status == 503 and "too many connections" in rawhttp.json_body(body)["error"]
    assert all(p.result(60).status_code == 200 for p in pending)
    assert requests.get(server.url + "/ping", timeout=5).text == "OK"
