"""Run the API under gevent's WSGIServer until SIGTERM, then drain.

Import this module only after ``gevent.monkey.patch_all()`` (``puller.cli``
does it first thing for ``serve``): the engine's locks, sleeps and the Docker
client's sockets must be gevent's.
"""

import errno
import logging
import os
import resource
import signal
import ssl

import gevent
from gevent.event import Event
from gevent.pool import Pool

from puller import settings
from puller.core._engine import Engine
from puller.core._credentials import CredentialChain, FileCredentials, HostCredentials
from puller.core._errors import DaemonUnavailable, InvalidRequest
from puller.jobs.manager import JobManager
from puller.jobs.store import DB_NAME, JobStore, StateError
from puller.server.app import Api
from puller.server.http import Server

log = logging.getLogger("puller.server")


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

    def flush(self):
        """Bottle flushes ``wsgi.errors`` after writing to it."""


# Descriptors the process needs besides client connections: the listening
# socket, logs, the event loop's, pipes, and later files of its own.
FD_RESERVE = 64
MIN_CONNECTIONS = 8


def daemon_sockets(config):
    """The most sockets the engine keeps open to the Docker daemon."""
    return max(64, 2 * config.max_daemon_pulls) + 4


def fit_connections(config, getrlimit=resource.getrlimit, setrlimit=resource.setrlimit):
    """Raise the soft open-file limit towards the hard one; return how many
    client connections fit beside the daemon's sockets, saying so if fewer
    than asked."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    need = config.connections + daemon_sockets(config) + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = (1 << 20) if hard == resource.RLIM_INFINITY else hard
        if target > soft:
            try:
                setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError) as exc:
                log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return config.connections
    fits = soft - daemon_sockets(config) - FD_RESERVE
    if fits < MIN_CONNECTIONS:
        raise InvalidRequest("the open-file limit (%d) leaves no room for client connections beside %d daemon "
                             "sockets; raise it (ulimit -n) or lower --max-daemon-pulls"
                             % (soft, daemon_sockets(config)), "--connections")
    log.warning("open-file limit is %d (hard %s): serving at most %d connections instead of %d",
                soft, "unlimited" if hard == resource.RLIM_INFINITY else hard, fits, config.connections)
    return fits


def tls_context(config):
    """The API's own TLS (``--https-*``), or None for plain HTTP."""
    if not (config.https_cert or config.https_key or config.https_client_ca):
        return None
    if not (config.https_cert and config.https_key):
        raise InvalidRequest("HTTPS needs both --https-cert and --https-key", "--https-cert")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.https_cert, config.https_key)
        if config.https_client_ca:
            context.load_verify_locations(config.https_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise InvalidRequest("cannot use the HTTPS certificate or key: %s" % (getattr(exc, "strerror", None) or exc),
                             "--https-cert")
    return context


def open_jobs(config, engine):
    """The job store and manager; a state dir that cannot be used stops the start."""
    try:
        store = JobStore(config.state_path)
    except StateError as exc:
        raise InvalidRequest(str(exc), "--state-dir")
    legacy = os.path.join(settings.state_base_dir(), DB_NAME)
    if not config.state_dir and os.path.exists(legacy):
        # Before 0.2.0 every server shared one default dir; its jobs stay there.
        log.warning("jobs of an older puller are in %s; this server keeps its own in %s (start with "
                    "--state-dir %s to use the old ones)", legacy, config.state_path, os.path.dirname(legacy))
    return JobManager(engine, store, gevent_runner, max_jobs=config.max_jobs, retention=config.job_retention,
                      max_images=config.max_images)


def _purge_forever(jobs, every):
    while True:
        try:
            deleted = jobs.purge()
            if deleted:
                log.info("deleted %d job(s) older than the retention", deleted)
        except Exception:  # pylint: disable=broad-except
            log.exception("purging old jobs failed; trying again later")
        gevent.sleep(every)


def credentials_of(config):
    """``(chain or None, the file's source or None)`` for images that come without credentials."""
    source = FileCredentials(config.credentials_file) if config.credentials_file else None
    chain = [source, HostCredentials() if config.host_credentials else None]
    return (CredentialChain(chain) if any(chain) else None), source


def _reload(source):
    # SIGHUP is always handled: its default action would kill the server without a drain.
    if source is None:
        log.info("SIGHUP: nothing to reload (no --credentials-file)")
        return
    try:
        log.info("SIGHUP: credentials for %d registries reloaded from %s", source.reload(), source.path)
    except InvalidRequest as exc:
        log.error("SIGHUP: %s; the credentials read before stay in use", exc.message)


def serve(config):
    """Serve until SIGTERM/SIGINT; return the process exit code."""
    credentials, credentials_file = credentials_of(config)
    if config.runtime_endpoint:
        # grpcio's own threads would block the event loop: gevent's completion queue instead.
        try:
            import grpc.experimental.gevent as grpc_gevent  # pylint: disable=import-outside-toplevel
        except ImportError as exc:  # the CRI client says so too; here first, as one line, not a traceback
            raise DaemonUnavailable("--runtime-endpoint needs the Python libraries grpcio and protobuf "
                                    "(pip install 'puller[cri]'): %s" % exc)

        grpc_gevent.init_gevent()
    engine = Engine(config.engine_config(), credentials=credentials, runtime=config.runtime())
    jobs = open_jobs(config, engine)
    api = Api(engine, config, jobs, runner=gevent_runner)
    in_flight = InFlightRequests(api.app)
    context = tls_context(config)
    server = Server(config.address, in_flight, connections=fit_connections(config),
                    header_timeout=config.header_timeout, idle_timeout=config.idle_timeout,
                    write_timeout=config.write_timeout,
                    log=_AccessLog(), error_log=_AccessLog(), **({"ssl_context": context} if context else {}))
    server.stop_timeout = 0.5
    if not config.loopback_only and config.token and context is None:
        log.warning("!!! listening on %s without TLS while a token is set: the token travels in clear text. Set "
                    "--https-cert and --https-key. !!!", config.listen)
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
    gevent.signal_handler(signal.SIGHUP, _reload, credentials_file)
    try:
        server.start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise InvalidRequest("cannot listen on %s: %s" % (config.listen, reason), "--listen")
    host, port = server.address[:2]
    log.info("puller listening on %s:%d, %s at %s, jobs in %s", host, port, engine.runtime.kind,
             config.runtime_endpoint or config.engine_config().docker_host, jobs.store.path)
    resumed = jobs.resume(enabled=config.resume)
    if resumed:
        log.info("resumed %d job(s) left unfinished by the last run: %s", len(resumed), ", ".join(resumed))
    gevent.spawn(_purge_forever, jobs, min(60.0, max(0.5, config.job_retention / 10)))
    # Not serve_forever(): its own stop() would kill in-flight requests after
    # stop_timeout, before our drain is done.
    stop_requested.wait()
    log.info("signal %d: no new connections; draining %d in-flight request(s) (up to %ss)",
             received[0], in_flight.count, config.drain_timeout)
    in_flight.draining = True
    server.close()
    # Jobs (every /pull is one) get the drain timeout to finish; what is left
    # is stopped and stays queued in the store, resumed at the next start.
    left = jobs.shutdown(config.drain_timeout)
    if left:
        log.warning("drain timeout: %d job(s) still running are stopped; they resume at the next start", left)
    api.draining = True  # event streams end
    if not in_flight.idle.wait(5.0):
        log.warning("%d request(s) still running are cut off", in_flight.count)
    server.stop(timeout=0.5)  # what is left are idle keep-alive connections
    jobs.store.close()
    log.info("stopped")
    return 0
