"""Run the API under gevent's WSGIServer until SIGTERM, then drain.

Import this module only after ``gevent.monkey.patch_all()`` (``puller.cli``
does it first thing for ``serve``): the engine's locks, sleeps and the Docker
client's sockets must be gevent's.
"""

import logging
import signal
import socket

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from puller.core._engine import Engine
from puller.server.app import Api

log = logging.getLogger("puller.server")


class _NoDelayServer(WSGIServer):
    """Without TCP_NODELAY a keep-alive client waits ~40 ms per small answer
    (Nagle's algorithm meeting the client's delayed ACK)."""

    def handle(self, sock, address):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a unix socket): nothing to tune
        super().handle(sock, address)


def gevent_runner(fn, items, size):
    """The engine's runner in the server: a bounded greenlet pool per request."""
    return Pool(max(1, size)).map(fn, items)


class InFlightRequests:
    """WSGI middleware counting requests until their response is fully written.

    gevent's ``stop()`` waits for every connection handler, idle keep-alive
    connections included, so a drain would always last its whole timeout.
    This tells the drain when the last real request is done.
    """

    def __init__(self, app):
        self.app = app
        self.count = 0
        self.draining = False
        self.idle = Event()
        self.idle.set()

    def _done(self):
        self.count -= 1
        if not self.count:
            self.idle.set()

    def __call__(self, environ, start_response):
        self.count += 1
        self.idle.clear()
        if self.draining:  # tell keep-alive clients to go elsewhere next time
            def start_response(status, headers, exc_info=None, _start=start_response):
                return _start(status, headers + [("Connection", "close")], exc_info)
        try:
            return _ClosingBody(self.app(environ, start_response), self._done)
        except BaseException:
            self._done()
            raise


class _ClosingBody:
    """The app's body; the server calls ``close()`` once it has been written."""

    def __init__(self, body, on_close):
        self._body, self._on_close = body, on_close

    def __iter__(self):
        return iter(self._body)

    def close(self):
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


class _AccessLog:
    """gevent writes access lines to a file-like object; send them to logging."""

    def write(self, line):
        log.info("%s", line.rstrip())


def serve(config):
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    engine = Engine(config.engine_config())
    api = Api(engine, config, runner=gevent_runner)
    in_flight = InFlightRequests(api.app)
    server = _NoDelayServer(config.address, in_flight, spawn=Pool(config.connections),
                            log=_AccessLog(), error_log=_AccessLog())
    server.stop_timeout = 0.5
    if not config.loopback_only and not config.token:
        log.warning("!!! listening on %s WITHOUT A TOKEN: anyone who can reach this port can make the "
                    "Docker daemon pull images. Set --token-file or PULLER_TOKEN. !!!", config.listen)

    received = []
    stop_requested = Event()

    def on_signal(signum):
        received.append(signum)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, on_signal, signum)
    server.start()
    host, port = server.address[:2]
    log.info("puller listening on %s:%d, docker at %s", host, port, config.engine_config().docker_host)
    # Not serve_forever(): its own stop() would kill in-flight requests after
    # stop_timeout, before our drain is done.
    stop_requested.wait()
    log.info("signal %d: no new connections; draining %d in-flight request(s) (up to %ss)",
             received[0], in_flight.count, config.drain_timeout)
    in_flight.draining = True
    server.close()
    if not in_flight.idle.wait(config.drain_timeout):
        log.warning("drain timeout: %d request(s) still running are cut off", in_flight.count)
    server.stop(timeout=0.5)  # what is left are idle keep-alive connections
    log.info("stopped")
    return 0
