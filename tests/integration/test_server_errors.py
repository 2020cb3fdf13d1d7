"""Every answer the server writes is JSON, for any input; bad settings stop the start.

Each case here once produced a plain-text or empty answer, a traceback in the
log, or a server that started with authentication off.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

import rawhttp
from conftest import LEAKS, free_port


def _no_traceback(server):
    log = server.log()
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("name,raw,status,field", [
    ("negative-length", b"POST /pull HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Content-Length"),
    ("text-length", b"POST /pull HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, "Content-Length"),
    ("long-path", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "path"),
    ("garbage-line", b"HELLO\r\n\r\n", 400, "request"),
    ("deep-arrays", rawhttp.post("/pull", b"[" * 40000 + b"]" * 40000), 400, "body"),
    ("deep-objects", rawhttp.post("/pull", b'{"a":' * 15000 + b"1" + b"}" * 15000), 400, "body"),
    ("nan-timeout", rawhttp.post("/pull", b'{"images": ["a"], "timeout": NaN}'), 400, "body"),
    ("infinite-timeout", rawhttp.post("/pull", b'{"images": ["a"], "timeout": 1e999}'), 400, "timeout"),
    ("chunked-too-large", rawhttp.post("/pull", b'{"images": ["a"], "project": "' + b"x" * 150000 + b'"}',
                                       chunked=True), 413, "body"),
])
def test_protocol_and_body_errors_are_json(start_server, name, raw, status, field):
    server = start_server("--max-body", "100000")
    got, headers, body = rawhttp.exchange(server.port, raw)
    assert got == status, (name, body[:300])
    assert headers["content-type"] == "application/json"
    payload = rawhttp.json_body(body)
    assert payload["error"] and payload.get("field") == field, payload
    _no_traceback(server)


def test_chunked_body_is_accepted(clean, server):
    body = json.dumps({"images": [clean.image(1)], "dry_run": True}).encode()
    status, _headers, raw = rawhttp.exchange(server.port, rawhttp.post("/pull", body, chunked=True))
    assert status == 200, raw
    (row,) = json.loads(raw)["success"]
    assert row["status"] == "would_pull"


def test_huge_declared_length_gets_413_and_the_connection_is_closed(start_server):
    server = start_server("--max-body", "2000")
    sock = rawhttp.connect(server.port)
    try:
        sock.sendall(b"POST /pull HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000000000\r\n\r\n{")
        status, headers, body = rawhttp.read_response(sock)
        assert status == 413 and rawhttp.json_body(body)["field"] == "body"
        assert headers.get("connection") == "close"
        assert rawhttp.closed_within(sock, 2.0), "the server kept waiting for 10^20 bytes"
    finally:
        sock.close()


def test_latin1_authorization_is_401_and_bearer_is_case_insensitive(ground, start_server):
    token = "Case-Token-0987"
    LEAKS.secrets.add(token)
    server = start_server(env={"PULLER_TOKEN": token})
    raw = b"GET /debug/dump HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe9\xff\xfe\r\n\r\n"
    status, _h, body = rawhttp.exchange(server.port, raw)
    assert status == 401 and rawhttp.json_body(body)["field"] == "Authorization"
    for scheme in ("bearer", "BEARER", "Bearer", "bEaReR"):
        resp = requests.get(server.url + "/debug/dump", headers={"Authorization": "%s %s" % (scheme, token)})
        assert resp.status_code == 200, scheme
    assert requests.get(server.url + "/debug/dump", headers={"Authorization": "Basic " + token}).status_code == 401
    _no_traceback(server)


def test_a_request_cut_off_by_the_drain_gets_a_json_503(clean, start_server, proxy):
    from faultproxy import Rules

    proxy.reset_stats(Rules(delay=30))
    server = start_server("--drain-timeout", "1s")
    pending = server.pull_later({"images": [clean.image(3, registry=proxy.address)]})
    time.sleep(1.0)
    t0 = time.monotonic()
    server.stop()
    resp = pending.result(30)
    assert time.monotonic() - t0 < 10
    assert resp.status_code == 503, resp.text
    assert "shutting down" in resp.json()["error"]
    _no_traceback(server)


def _serve(args, env=None, timeout=20):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "puller", "serve"] + list(args), env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("args,env,where", [
    (["--backoff-base=-1s"], {}, "--backoff-base"),
    (["--backoff-base", "0s"], {}, "--backoff-base"),
    (["--deadline=-3m"], {}, "--deadline"),
    (["--drain-timeout", "NaN"], {}, "--drain-timeout"),
    (["--connections", "0"], {}, "--connections"),
    (["--max-daemon-pulls=-1"], {}, "--max-daemon-pulls"),
    (["--max-body", "lots"], {}, "--max-body"),
    (["--header-timeout", "0s"], {}, "--header-timeout"),
    ([], {"PULLER_TOKEN": "   "}, "PULLER_TOKEN"),
    ([], {"PULLER_IDLE_TIMEOUT": "forever"}, "PULLER_IDLE_TIMEOUT"),
])
def test_bad_settings_are_refused_at_start_with_one_line(args, env, where):
    env = dict(env)
    env.setdefault("PULLER_TOKEN_FILE", "")
    result = _serve(["--listen", "127.0.0.1:%d" % free_port()] + args, env)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and where in lines[0], result.stderr


def test_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = _serve(["--listen", "127.0.0.1:%d" % port])
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "cannot listen on 127.0.0.1:%d: address already in use" % port in result.stderr
