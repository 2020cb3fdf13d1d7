"""A small HTTP proxy in front of the test registry that misbehaves on purpose.

dockerd talks to ``localhost:<proxy port>`` (an insecure registry, being on
loopback); the proxy forwards to the real registry and can fail, reset or
delay requests, while it counts manifest requests and the most that were in
flight at once.
"""

import http.client
import random
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MANIFEST_PATH = re.compile(r"^/v2/.+/manifests/[^/]+$")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class Rules:
    """What to do to requests whose path matches ``pattern``."""

    def __init__(self, pattern=MANIFEST_PATH, fail_first=0, fail_status=503, reset_first=0,
                 delay=0.0, fail_every=0, stall=0.0, fail_ratio=0.0, seed=1, hang_body_first=0, hang=0.0):
        self.pattern = pattern
        self.fail_first = fail_first  # answer the first N matching requests with fail_status
        self.fail_status = fail_status
        self.reset_first = reset_first  # reset the connection of the first N matching requests
        self.fail_every = fail_every  # then fail every Nth matching request (alternating 503/reset)
        self.delay = delay  # seconds to hold each matching request before forwarding
        self.stall = stall  # seconds to hold a matching request and then reset it
        self.fail_ratio = fail_ratio  # fail this share of matching requests at random (503 or reset)
        self.rng = random.Random(seed)
        self.hang_body_first = hang_body_first  # the first N matching answers stop halfway through the body...
        self.hang = hang  # ... for this long, then the connection is reset


class FaultProxy:
    def __init__(self, upstream_port, preserve_headers=False):
        self.upstream_port = upstream_port
        # Forward every header as sent (dockerd sends one Accept per manifest
        # type). Off by default: the fault tests were calibrated on the proxy
        # that kept one Accept, with which dockerd makes its requests the same
        # way every time; the mirror tests need the digests the daemon really
        # gets, so they turn it on.
        self.preserve_headers = preserve_headers
        self.rules = Rules(fail_first=0)
        self.lock = threading.Lock()
        self.reset_stats()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                proxy._handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.address = "localhost:%d" % self.port
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset_stats(self, rules=None):
        with self.lock:
            if rules is not None:
                self.rules = rules
            self.matched = 0
            self.manifest_requests = []
            self.in_flight_manifests = 0
            self.max_in_flight_manifests = 0
            self.injected = 0
            self.bytes_out = 0  # body bytes of blob answers sent to clients

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # -- the proxying ---------------------------------------------------------
    def _decide(self, path):
        with self.lock:
            rules = self.rules
            if not rules.pattern.match(path):
                return None, 0.0
            self.matched += 1
            n = self.matched
            if n <= rules.fail_first:
                action = "fail"
            elif n <= rules.fail_first + rules.reset_first:
                action = "reset"
            elif rules.fail_every and n % rules.fail_every == 0:
                action = "fail" if (n // rules.fail_every) % 2 else "reset"
            elif rules.fail_ratio and rules.rng.random() < rules.fail_ratio:
                action = rules.rng.choice(("fail", "reset"))
            elif n <= rules.fail_first + rules.reset_first + rules.hang_body_first:
                action = "hang-body"
            elif rules.stall:
                action = "stall"
            else:
                action = None
            if action:
                self.injected += 1
            return action, rules.delay

    def _handle(self, h):
        path = h.path.split("?", 1)[0]
        is_manifest = bool(MANIFEST_PATH.match(path))
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else None
        action, delay = self._decide(path)
        if is_manifest:
            with self.lock:
                self.manifest_requests.append((h.command, path))
                self.in_flight_manifests += 1
                self.max_in_flight_manifests = max(self.max_in_flight_manifests, self.in_flight_manifests)
        try:
            if delay:
                time.sleep(delay)
            if action == "stall":
                time.sleep(self.rules.stall)
                action = "reset"
            if action == "reset":
                self._reset(h)
                return
            if action == "fail":
                payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                h.send_response(self.rules.fail_status)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(payload)))
                h.end_headers()
                if h.command != "HEAD":
                    h.wfile.write(payload)
                return
            try:
                self._forward(h, body, hang=self.rules.hang if action == "hang-body" else 0.0)
            except (OSError, http.client.HTTPException):
                # The registry went away mid-answer: the client must see the
                # connection drop, as it would with no proxy in between.
                self._reset(h)
        finally:
            if is_manifest:
                with self.lock:
                    self.in_flight_manifests -= 1

    @staticmethod
    def _reset(h):
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass

    def _forward(self, h, body, hang=0.0):
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            if self.preserve_headers:
                upstream.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
                for key, value in h.headers.items():
                    if key.lower() not in HOP_HEADERS and key.lower() != "content-length":
                        upstream.putheader(key, value)
                if body is not None:
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body)
            else:
                headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
                upstream.request(h.command, h.path, body=body, headers=headers)
            resp = upstream.getresponse()
            chunked = resp.getheader("Content-Length") is None and h.command != "HEAD" and resp.status not in (204, 304)
            h.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_HEADERS:
                    h.send_header(k, v)
            if chunked:
                h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            if h.command == "HEAD":
                return
            expected = resp.getheader("Content-Length")
            sent = 0
            while True:
                data = resp.read(16384 if hang else 65536)
                if not data:
                    break
                if hang and sent > 0:  # half-way (after the first piece): go silent, then drop
                    time.sleep(hang)
                    raise http.client.IncompleteRead(b"", 0)
                sent += len(data)
                if "/blobs/" in h.path:
                    with self.lock:
                        self.bytes_out += len(data)
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
            elif expected is not None and sent < int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - sent)
        finally:
            upstream.close()
