"""Event streams and readers slower than their job, against a real server.

The slow reader is a raw socket shaped like a remote client's: an Ethernet
path's MSS and a small receive buffer, so the kernel holds little of the
stream and the server's writes wait on the reader. The one that stops is a
plain loopback socket: without the server's low-water mark on unsent bytes,
the kernel would take the whole stream into a send buffer grown to megabytes
and the server would never notice the reader had stopped.

A dry run of many images gives many events at once (a ``done`` per image),
far faster than the readers take them, so the server's queue for each reader
holds most of the job.
"""

import json
import re
import socket
import time

import requests

from conftest import report

IMAGES = 600


def dry_run(ground, server, count=IMAGES):
    body = {"dry_run": True, "concurrency": 20,
            "images": ["%s:t%04d" % (ground.image(1), n) for n in range(count)]}
    resp = requests.post(server.url + "/jobs", json=body, timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


class RawReader:
    """``GET /jobs/{id}/events`` (NDJSON) over a socket; ``remote``: MSS 1448 and a 4 KiB receive buffer."""

    def __init__(self, server, job_id, remote=False):
        self.sock = socket.socket()
        if remote:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1448)
        self.sock.settimeout(120)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.sendall(b"GET /jobs/%s/events HTTP/1.1\r\nHost: puller\r\n\r\n" % job_id.encode())
        self.raw = b""

    def read(self, size=1024):
        data = self.sock.recv(size)
        self.raw += data
        return data

    def read_all(self, size=1024, pause_every=0.0, pause=0.0, at=0):
        """To the server's close, ``size`` bytes at a time every ``pause_every``
        seconds, with one stop of ``pause`` seconds after ``at`` bytes."""
        paused = False
        while self.read(size):
            if not paused and pause and len(self.raw) >= at:
                paused = True
                time.sleep(pause)
            time.sleep(pause_every)
        self.sock.close()

    def events(self):
        """``(events, complete)``: the NDJSON lines, and whether the chunked body was ended properly."""
        head, _sep, body = self.raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert b"transfer-encoding: chunked" in head.lower()
        data, complete = b"", False
        while body:
            size_line, _sep, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                complete = rest.startswith(b"\r\n")
                break
            if len(rest) < size + 2:
                break  # cut inside a chunk
            data, body = data + rest[:size], rest[size + 2:]
        lines = data.split(b"\n")[:-1]  # the last one is unfinished, or empty
        return [json.loads(line) for line in lines if line.strip()], complete


def _no_tracebacks(server):
    log = server.log()
    assert "Traceback" not in log and "failed with" not in log, log[-3000:]
    return log


def test_a_slow_reader_gets_every_done_event_and_the_report(clean, start_server):
    # A 2 s header timeout: before, each write of an answer had that long in all.
    server = start_server("--header-timeout", "2s")
    job_id = dry_run(clean, server)
    reader = RawReader(server, job_id, remote=True)
    t0 = time.monotonic()
    # about 20 KiB/s, and once a stop of 5 s (a busy client, a GC pause)
    reader.read_all(size=1024, pause_every=0.05, pause=5.0, at=120_000)
    took = time.monotonic() - t0
    events, complete = reader.events()
    assert complete, "the stream was cut after %d events" % len(events)
    assert events[0]["type"] == "state" and len(events[0]["job"]["images"]) == IMAGES
    done = [e for e in events if e["type"] == "done"]
    # Images that ended before the reader came are in the state; every other one has its done event.
    before = [img["index"] for img in events[0]["job"]["images"] if img["phase"] == "succeeded"]
    assert sorted(before + [i for e in done for i in e["indexes"]]) == list(range(IMAGES))
    assert len(done) >= IMAGES // 2, "the job ran ahead of the reader for most of it"
    assert {e["status"] for e in done} == {"would_pull"}
    # running: said by an event, or by the state when the job had started before the reader came
    assert events[0]["job"]["status"] == "running" or any(
        e["type"] == "status" and e["status"] == "running" for e in events)
    assert events[-1]["type"] == "report" and events[-1]["ok"] is True
    assert len(events[-1]["success"]) == IMAGES
    assert requests.get(server.url + "/jobs/" + job_id, timeout=10).json()["status"] == "succeeded"
    _no_tracebacks(server)
    report(clean, "event stream: a reader at ~20 KiB/s with a 5 s stop got all %d events (%d done + report; %d "
           "ended before it came) of a %d-image dry run in %.1fs" % (len(events), len(done), len(before), IMAGES, took))


def test_a_reader_that_stops_is_closed_quietly_after_the_write_timeout(clean, start_server):
    server = start_server("--write-timeout", "3s")
    job_id = dry_run(clean, server)
    reader = RawReader(server, job_id)
    reader.read(4096)  # the head and the start of the state, then nothing more
    stopped = time.monotonic()
    deadline = stopped + 30
    closed_line = re.compile(r"closed the answer to 127\.0\.0\.1 \(/jobs/%s/events\)" % job_id)
    while not closed_line.search(server.log()) and time.monotonic() < deadline:
        time.sleep(0.2)
    waited = time.monotonic() - stopped
    log = _no_tracebacks(server)
    assert len(closed_line.findall(log)) == 1, log[-3000:]
    assert 2.5 <= waited < 3 + 15, "closed after %.1fs" % waited  # the write timeout, at most a heartbeat later
    # What the kernel still held reaches the reader, then the server's close: no proper end.
    reader.sock.settimeout(10)
    reader.read_all(size=65536)
    events, complete = reader.events()
    assert not complete and not any(e["type"] == "report" for e in events)
    # The job and the server go on; a new reader gets its state and report.
    assert requests.get(server.url + "/ping", timeout=5).status_code == 200
    again = requests.get(server.url + "/jobs/%s/events" % job_id, timeout=30)
    lines = [json.loads(line) for line in again.text.splitlines()]
    assert [e["type"] for e in lines] == ["state", "report"] and lines[1]["ok"] is True
    report(clean, "event stream: a reader that stopped was closed %.1fs later (write timeout 3s), one log line, "
           "no traceback" % waited)
