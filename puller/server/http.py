"""gevent's WSGI server, hardened for clients that misbehave.

- A new connection must deliver its request line and headers within
  ``header_timeout``; a keep-alive connection with no new request for
  ``idle_timeout`` is closed. Without these, a thousand silent sockets held
  every connection slot and a fresh ``/ping`` waited forever.
- At the connection limit the server closes the connection that has waited
  longest without a request in progress (idle keep-alive, or still sending
  its head); only when every connection is in a request is a new one refused,
  with a JSON 503. The accept loop never stops, so the server never freezes.
- Every response the server writes itself (400 for a malformed request, 414,
  the 503 of a request cut off by the drain) is JSON with ``error``, like the
  app's; client mistakes log one line, never a traceback.
- Running out of file descriptors in ``accept`` frees the oldest waiting
  connection and pauses accepting briefly instead of logging tracebacks.
- Writing an answer may wait ``write_timeout`` for the client to take any of
  it, however long the answer (an event stream included): a slow reader gets
  all of it, one that stopped reading is closed with one log line.
- Over HTTPS the TLS handshake is the connection handler's first step, under
  ``header_timeout`` as a whole, and the connection counts and may be closed
  for room meanwhile, like one still sending its head. Done before the
  handler (gevent's way), a ClientHello trickled one byte at a time held its
  socket for good, outside the limit, until the server ran out of
  descriptors. At the limit with every connection busy, an HTTPS connection
  is closed without its handshake: a JSON 503 would need the very handshake
  the limit is there to bound.
"""

import errno
import json
import logging
import socket
import sys
import time
from collections import OrderedDict

import gevent
import gevent.socket
from gevent import GreenletExit
from gevent.pool import Group
from gevent.pywsgi import MAX_REQUEST_LINE, WSGIHandler, WSGIServer

log = logging.getLogger("puller.server")

_EVICTED = "closed to make room for a new connection"


def error_bytes(status, message, field=None):
    """A complete JSON error response with ``Connection: close``, as bytes."""
    payload = {"error": message}
    if field:
        payload["field"] = field
    body = json.dumps(payload).encode("utf-8")
    head = "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (
        status, len(body))
    return head.encode("latin-1") + body


_PROTOCOL_ERRORS = {
    "414": error_bytes("414 URI Too Long", "request line longer than %d bytes" % MAX_REQUEST_LINE, "path"),
}


# Connections accepted in one pass of the loop, at most (see Server.__init__).
MAX_ACCEPT = 16


class _HeadTimeout(gevent.Timeout):
    """The client took too long to send a request line and headers."""


class _HandshakeTimeout(gevent.Timeout):
    """The client took too long to finish its TLS handshake."""


class Connections:
    """The open client connections, and which of them may be closed for room.

    A connection is *waiting* while no request of it is being handled: idle
    between keep-alive requests, or still sending its request head. Those are
    kept oldest first; closing one of them loses no work.
    """

    def __init__(self, limit):
        self.limit = limit
        self.open = 0
        self.evicted = 0
        self.refused = 0
        self._waiting = OrderedDict()

    def admit(self, handler):
        """Count a new connection in; False when it must be refused."""
        while self.open >= self.limit:
            if not self.evict_oldest():
                self.refused += 1
                return False
        self.open += 1
        handler.counted = True
        return True

    def evict_oldest(self):
        if not self._waiting:
            return False
        handler = self._waiting.popitem(last=False)[0]
        self.evicted += 1
        self.open -= 1
        handler.counted = False
        handler.evict()
        return True

    def waiting(self, handler):
        if handler.counted:
            self._waiting[handler] = True
            self._waiting.move_to_end(handler)

    def busy(self, handler):
        self._waiting.pop(handler, None)

    def closed(self, handler):
        self._waiting.pop(handler, None)
        if handler.counted:
            handler.counted = False
            self.open -= 1


class Handler(WSGIHandler):
    """One client connection: bounded waits, JSON for the server's own errors."""

    counted = False
    _head_timer = None
    _requests = 0
    _killed = False

    def handle(self):
        connections = self.server.connections
        if not connections.admit(self):
            self._refuse()
            return
        try:
            _no_delay(self.socket)
            _low_water(self.socket)
            if self._handshake():
                super().handle()
        except OSError as exc:  # the client went away while we answered: its business, not a fault
            log.debug("connection from %s ended: %s", self.client_address, exc)
        finally:
            connections.closed(self)

    def _handshake(self):
        """HTTPS: the TLS handshake, bounded like a request head (the whole of
        it, not each read) and evictable meanwhile; False when it failed."""
        do_handshake = getattr(self.socket, "do_handshake", None)
        if do_handshake is None:
            return True  # plain HTTP
        self.server.connections.waiting(self)
        self.socket.settimeout(self.server.header_timeout)
        peer = self.client_address[0] if self.client_address else "?"
        try:
            with _HandshakeTimeout(self.server.header_timeout):
                do_handshake()
            return True
        except _HandshakeTimeout:
            log.debug("TLS handshake with %s not done within the header timeout; closed", peer)
        except (OSError, ValueError) as exc:
            if self.evicted:
                log.debug("TLS handshake with %s closed to make room", peer)
            else:
                log.info("TLS handshake with %s failed: %s", peer, _short(exc))
        return False

    def _refuse(self):
        if getattr(self.socket, "do_handshake", None) is not None:
            self.socket.close()  # no handshake yet, so no way to answer
            return
        try:
            self.socket.sendall(error_bytes("503 Service Unavailable", "too many connections, all busy; "
                                            "try again shortly"))
        except OSError:
            pass
        finally:
            self.socket.close()

    evicted = False

    def evict(self):
        """Close this waiting connection now; its greenlet wakes and ends."""
        self.evicted = True
        sock = getattr(self, "socket", None)
        if sock is not None:
            try:
                # The TCP shutdown of gevent's socket class, for TLS sockets
                # too: SSLSocket's own also drops its TLS object, which a
                # handshake or read waiting on it would use when it wakes.
                gevent.socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    # -- reading the request head, with a deadline -------------------------------
    def read_requestline(self):
        self.server.connections.waiting(self)
        limit = self.server.idle_timeout if self._requests else self.server.header_timeout
        self.socket.settimeout(None)  # the head timer below bounds the whole head, not each read
        self._head_timer = _HeadTimeout(limit)
        self._head_timer.start()
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._stop_head_timer()
            self._requests += 1
            self.server.connections.busy(self)
            # Each read of a body gets this long (writes: ``_sendall``).
            self.socket.settimeout(self.server.header_timeout)

    def _stop_head_timer(self):
        if self._head_timer is not None:
            self._head_timer.close()
            self._head_timer = None

    def handle_one_request(self):
        try:
            result = super().handle_one_request()
        except _HeadTimeout:
            return None  # a slow or idle client: close quietly
        finally:
            self._stop_head_timer()
        if self.evicted:
            return None
        if isinstance(result, tuple):
            status, _plain = result
            result = (status, _PROTOCOL_ERRORS.get(status) or self._client_error_body)
        return result

    def run_application(self):
        try:
            super().run_application()
        finally:
            if self.close_connection and self.wsgi_input is not None:
                # gevent would read the unread body to its end before closing
                # (a declared 10^20 bytes: until the client gives up). The
                # answer said "Connection: close", so skip that: gevent's own
                # flag for an input it cannot resynchronise.
                self.wsgi_input._chunked_input_error = True

    # -- writing the answer ----------------------------------------------------------
    # A write that times out ends the answer like a client that went away: no traceback.
    ignored_socket_errors = WSGIHandler.ignored_socket_errors + (errno.ETIMEDOUT,)

    def _sendall(self, data):
        """gevent's, but bounding each wait for the client to take some of the
        data, not the whole write: under gevent's, a reader slower than the
        answer's size over ``header_timeout`` was cut mid-answer however
        steadily it read. Even so a slow reader's writes wait long: its kernel
        reopens the TCP window only once the reader has freed a share of its
        receive buffer (64 KiB over loopback, a sixteenth of a big buffer)."""
        self.socket.settimeout(self.server.write_timeout)
        view = memoryview(data)
        try:
            while view:
                view = view[self.socket.send(view):]
        except socket.timeout:
            self.status = "socket error: the client took nothing for %ss" % self.server.write_timeout
            self.code = -abs(self.code or 0)
            self.close_connection = True
            log.info("closed the answer to %s (%s): it took none of it for %ss",
                     self.client_address[0] if self.client_address else "?", self.path, self.server.write_timeout)
            raise OSError(errno.ETIMEDOUT, "write timed out") from None
        except OSError as ex:
            self.status = "socket error: %s" % ex
            self.code = -abs(self.code or 0)
            raise
        self.response_length += len(data)

    # -- errors the server writes itself ------------------------------------------
    _client_error_body = error_bytes("400 Bad Request", "malformed HTTP request", "request")

    def _handle_client_error(self, ex):
        if self.evicted:
            return ("400", b"")
        field, message = "request", "malformed HTTP request"
        headers = getattr(self, "headers", None)
        length = headers.get("content-length") if headers is not None and hasattr(headers, "get") else None
        if length is not None and not (length.strip().isdigit()):
            field, message = "Content-Length", "Content-Length must be a non-negative integer"
        self._client_error_body = error_bytes("400 Bad Request", message, field)
        log.info("bad request from %s: %s", self.client_address[0] if self.client_address else "?",
                 _short(ex))
        return ("400", self._client_error_body)

    def handle_error(self, t, v, tb):
        self._killed = issubclass(t, GreenletExit)
        super().handle_error(t, v, tb)

    def _send_error_response_if_possible(self, error_code):
        if self.response_length or self.headers_sent:
            self.close_connection = True
            return
        if self._killed:
            status, message = "503 Service Unavailable", "the server is shutting down; this request was cut off"
        elif error_code == 400:
            status, message = "400 Bad Request", "malformed request body"
        else:
            status, message = "500 Internal Server Error", "internal server error"
        body = json.dumps({"error": message}).encode("utf-8")
        self.close_connection = True
        try:
            self.start_response(status, [("Content-Type", "application/json"), ("Connection", "close"),
                                         ("Content-Length", str(len(body)))],
                                exc_info=sys.exc_info() if sys.exc_info()[0] else None)
            self.write(body)
        except (OSError, AssertionError):
            self.close_connection = True


def _short(exc):
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


def _no_delay(sock):
    """Without TCP_NODELAY a keep-alive client waits ~40 ms per small answer
    (Nagle's algorithm meeting the client's delayed ACK)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not TCP: nothing to tune


# Unsent bytes the kernel may hold for a connection. Without a mark, the send
# buffer of a slow reader grows to megabytes (tcp_wmem) of stale events and a
# write waits until a third of them is taken, minutes for such a reader; with
# it the backlog stays in the job's queue, where progress is coalesced.
NOT_SENT_LOW_WATER = 64 * 1024


def _low_water(sock):
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)  # Linux, macOS
    if option is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, NOT_SENT_LOW_WATER)
    except OSError:
        pass  # not TCP


class Server(WSGIServer):
    """``WSGIServer`` with the ``Handler`` above and a ``Connections`` limit."""

    handler_class = Handler

    def __init__(self, address, app, connections, header_timeout, idle_timeout, write_timeout=300.0, **kwargs):
        # Not a Pool: a full pool stops the accept loop, which froze the
        # server; the limit is ``Connections``' job. The group is kept so
        # that ``stop()`` can still end every handler.
        self.handlers = Group()
        super().__init__(address, app, spawn=self.handlers.spawn, **kwargs)
        self.connections = Connections(connections)
        # gevent accepts up to max_accept connections in one pass of its loop
        # (100 by default) before their handlers run and ``Connections`` admits
        # or evicts: each is a descriptor beyond the limit until then. A burst
        # must fit in the descriptors kept aside (serve.FD_RESERVE), or a
        # storm of connections at the limit runs the process out of them.
        self.max_accept = MAX_ACCEPT
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self._fd_warned = 0.0

    def wrap_socket_and_handle(self, client_socket, address):
        """HTTPS: the socket is wrapped here and its handshake left to the
        handler (``Handler._handshake``); a client that fails it (plain HTTP, a
        wrong or missing client certificate) is closed with one log line."""
        try:
            ssl_socket = self.wrap_socket(client_socket, do_handshake_on_connect=False, **self.ssl_args)
        except (OSError, ValueError) as exc:
            log.info("TLS handshake with %s failed: %s", address[0] if address else "?", _short(exc))
            client_socket.close()
            return None
        try:
            return self.handle(ssl_socket, address)
        finally:
            ssl_socket.close()

    def stop(self, timeout=None):
        super().stop(timeout)
        self.handlers.kill(timeout=timeout if timeout is not None else self.stop_timeout)

    def do_read(self):
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            # Out of descriptors: close the oldest waiting connection and
            # pause accepting a moment (the kernel keeps the backlog).
            self.connections.evict_oldest()
            now = time.monotonic()
            if now - self._fd_warned > 10:
                self._fd_warned = now
                log.warning("out of file descriptors while accepting (%s); closing idle connections",
                            exc.strerror)
            self.stop_accepting()
            self._timer = self.loop.timer(0.05)
            self._timer.start(self._start_accepting_if_started)
            return None
