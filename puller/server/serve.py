"""Run the API under gevent's WSGIServer until SIGTERM, then drain.

Import this module only after ``gevent.monkey.patch_all()`` (``puller.cli``
does it first thing for ``serve``): the engine's locks, sleeps and the Docker
client's sockets must be gevent's.
"""

import logging
import signal

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from puller.core._engine import Engine
from puller.server.app import Api

log = logging.getLogger("puller.server")


def gevent_runner(fn, items, size):
    """The engine's runner in the server: a bounded greenlet pool per request."""
    return Pool(max(1, size)).map(fn, items)


class _AccessLog:
    """gevent writes access lines to a file-like object; send them to logging."""

    def write(self, line):
        log.info("%s", line.rstrip())


def serve(config):
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    engine = Engine(config.engine_config())
    api = Api(engine, config, runner=gevent_runner)
    server = WSGIServer(config.address, api.app, spawn=Pool(config.connections),
                        log=_AccessLog(), error_log=_AccessLog())
    server.stop_timeout = config.drain_timeout
    if not config.loopback_only and not config.token:
        log.warning("!!! listening on %s WITHOUT A TOKEN: anyone who can reach this port can make the "
                    "Docker daemon pull images. Set --token-file or PULLER_TOKEN. !!!", config.listen)

    def drain(signum):
        log.info("signal %d: no new connections; draining in-flight requests (up to %ss)",
                 signum, config.drain_timeout)
        server.stop(timeout=config.drain_timeout)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, lambda s=signum: gevent.spawn(drain, s))
    server.start()
    host, port = server.address[:2]
    log.info("puller listening on %s:%d, docker at %s", host, port, config.engine_config().docker_host)
    server.serve_forever()
    log.info("stopped")
    return 0
