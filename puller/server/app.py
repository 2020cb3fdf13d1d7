"""The HTTP API as a Bottle app object: ``/ping``, ``/debug/dump``, ``/pull``.

Every error is JSON: ``{"error": "...", "field": "images[2].tag"}``. Engine
errors are turned into status codes here and nowhere else.
"""

import hmac
import json
import logging
import os
import platform

import bottle

import puller
from puller.core._engine import run_in_threads
from puller.config import read_mirror_auth
from puller.core._errors import InvalidRequest, RequestForbidden
from puller.core._godur import rfc3339_now
from puller.core._preheat import PREHEAT_FIELD, parse_preheat_request, preheat_site
from puller.core._request import check_mirrors_allowed, parse_pull_request
from puller.jobs.model import SUCCEEDED
from puller.jobs.store import StoreUnavailable
from puller.server.answers import error_answer, json_answer
from puller.server.jobs_api import NDJSON, JobRoutes, store_unavailable, wants
from puller.server.metrics import Metrics
from puller.server.openapi import openapi_document

log = logging.getLogger("puller.server")

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "index.html"), "rb") as _page:
    STATUS_PAGE = _page.read()


_json, _error = json_answer, error_answer


def _no_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def parse_json(raw):
    """Strict JSON (no NaN or Infinity); every failure is a 400 naming ``body``."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise _error(400, "malformed JSON: nested too deeply", "body")
    except (UnicodeDecodeError, ValueError) as exc:
        raise _error(400, "malformed JSON: %s" % exc, "body")


def _num_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def version_info():
    import docker  # imported here: only /debug/dump needs its version

    return {"version": puller.__version__, "python": platform.python_version(),
            "docker_py": docker.__version__, "bottle": bottle.__version__,
            "os": platform.system().lower(), "arch": platform.machine()}


class Api:
    """Holds what the routes need; ``app`` is the Bottle object to serve."""

    def __init__(self, engine, config, jobs, runner=run_in_threads):
        self.engine = engine
        self.config = config
        self.runner = runner
        self.jobs = jobs
        self.mirror_auth = read_mirror_auth(config.mirror_auth_file)
        # The allow-list bounds the operator's mirrors too: one outside it
        # stops the start (exit 2) rather than being contacted unchecked.
        try:
            check_mirrors_allowed(config.mirrors, config.allow_registry, "--mirror")
        except RequestForbidden as exc:
            raise InvalidRequest("%s; admit it with --allow-registry too, or drop it" % exc.message, "--mirror")
        if config.mirrors and not engine.runtime.can_mirror:
            raise InvalidRequest("%s pulls through the node's own mirrors: write them into its hosts.toml with the "
                                 "role bbklab.puller.cri_mirrors instead" % engine.runtime.label, "--mirror")
        jobs.parse = self.parse
        jobs.engine_for = self.engine_for
        self.draining = False
        self.metrics = Metrics(engine.in_flight, jobs.store.counts_by_status, mirrors=config.mirrors)
        jobs.metrics = self.metrics
        engine.observer = self.metrics.on_event  # each daemon attempt once, however many requests share it
        # Preheat jobs copy to the sites the operator named, with the mirror credentials for each.
        self.preheaters = config.preheaters(self.mirror_auth, credentials=engine.credentials,
                                            observer=self.metrics.on_event)
        self.start_at = rfc3339_now()
        self.app = bottle.Bottle(catchall=True, autojson=False)
        self.app.default_error_handler = self._default_error
        self.app.route("/", "GET", self.page)
        self.app.route("/ping", "GET", self.ping)
        self.app.route("/debug/dump", "GET", self._authorized(self.dump))
        self.app.route("/pull", "POST", self._authorized(self.pull))
        self.app.route("/openapi.json", "GET", self._authorized(self.openapi))
        self.app.route("/metrics", "GET", self._authorized(self.prometheus))
        JobRoutes(self).install(self.app, self._authorized)

    # -- plumbing -----------------------------------------------------------
    @staticmethod
    def _default_error(res):
        """Bottle's own errors (404, 405, uncaught exceptions) as JSON."""
        res.content_type = "application/json"
        if res.status_code >= 500:
            if res.exception is not None:
                log.error("unhandled error: %s", type(res.exception).__name__, exc_info=res.exception)
            return json.dumps({"error": "internal server error"})
        return json.dumps({"error": res.status_line.split(" ", 1)[-1].lower() if res.status_code != 404
                           else "no such endpoint: %s" % bottle.request.path})

    def _authorized(self, handler):
        token = self.config.token
        if not token:
            return handler
        expected = token.encode("utf-8")

        def check(*args, **kwargs):
            # The raw header (PEP 3333: latin-1 text): Bottle's own accessor
            # re-decodes it as UTF-8 and raises on other bytes.
            scheme, _sep, given = bottle.request.environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
            given = given.strip().encode("latin-1", "replace")
            # RFC 7235: the scheme is case-insensitive.
            if not (hmac.compare_digest(given, expected) and scheme.lower() == "bearer"):
                return _error(401, "missing or wrong bearer token", "Authorization",
                              {"WWW-Authenticate": 'Bearer realm="puller"'})
            return handler(*args, **kwargs)

        return check

    def parse(self, body, max_images=None):
        """A request body as the engine's ``PullRequest``, with this server's mirrors; a preheat's
        (``preheat.to``) copies to a site this server admits (``--preheat-site``)."""
        if isinstance(body, dict) and PREHEAT_FIELD in body:
            return parse_preheat_request(body, allowed_sites=tuple(self.config.preheat_site),
                                         max_images=max_images or self.config.max_images,
                                         allowed_registries=self.config.allow_registry)[1]
        return parse_pull_request(body, max_images=max_images or self.config.max_images,
                                  mirrors=self.config.mirrors, mirror_auth=self.mirror_auth,
                                  allow_request_mirrors=self.config.allow_request_mirrors,
                                  allowed_registries=self.config.allow_registry, runtime=self.engine.runtime)

    def engine_for(self, job):
        """The engine a job runs on: a preheat's is its site's."""
        if job.kind == PREHEAT_FIELD:
            return self.preheaters.engine(preheat_site(job.request))
        return self.engine

    def read_json(self):
        """The request body as JSON, read straight from ``wsgi.input``.

        gevent has already de-chunked a chunked body (Bottle would try again
        and fail), so the size limit is enforced here while reading. A
        refused body is not read to its end: the connection is closed.
        """
        limit = self.config.max_body
        environ = bottle.request.environ
        close = {"Connection": "close"}
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > limit:
            raise _error(413, "request body is %s bytes; the limit is %d" % (length, limit), "body", close)
        stream, chunks, size = environ["wsgi.input"], [], 0
        try:
            while size <= limit:
                chunk = stream.read(min(65536, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:  # a timeout or reset while the client sends its body
            raise _error(408 if "timed out" in str(exc) else 400, "could not read the request body: %s"
                         % (exc.strerror or exc), "body", close)
        if size > limit:
            raise _error(413, "request body is larger than the limit of %d bytes" % limit, "body", close)
        return parse_json(b"".join(chunks))

    # -- routes -------------------------------------------------------------
    def page(self):
        """The status page: one HTML file, no data in it (it asks the API, token and all)."""
        bottle.response.content_type = "text/html; charset=utf-8"
        bottle.response.set_header("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                   "style-src 'unsafe-inline'; connect-src 'self'")
        bottle.response.set_header("X-Frame-Options", "DENY")
        return STATUS_PAGE

    def ping(self):
        bottle.response.content_type = "text/plain; charset=utf-8"
        return "OK"

    def dump(self):
        return _json(200, {
            "configs": self.config.public(),
            "num_fds": _num_fds(),
            "start_at": self.start_at,
            "version": version_info(),
            "in_flight": self.engine.in_flight(),
            "daemon": self.engine.daemon_info(),
            "store": {"path": self.jobs.store.path, "jobs": self.jobs.store.count(),
                      "writes": self.jobs.store.writes, "write_seconds": round(self.jobs.store.write_seconds, 6)},
        })

    def prometheus(self):
        bottle.response.content_type = self.metrics.content_type
        return self.metrics.render()

    def openapi(self):
        return _json(200, openapi_document(puller.__version__))

    def pull(self):
        """The original's ``/pull``, run as a job so that it finishes (and shows in
        ``/jobs``) even when its client goes away."""
        body = self.read_json()
        if isinstance(body, dict) and PREHEAT_FIELD in body:
            self.metrics.observe(400)
            return _error(400, "a preheat is a job: POST it to /jobs", PREHEAT_FIELD)
        try:
            request = self.parse(body)
        except InvalidRequest as exc:
            status = 403 if isinstance(exc, RequestForbidden) else 400
            self.metrics.observe(status)
            return _error(status, exc.message, exc.field)
        try:
            job = self.jobs.submit(request, body, kind="pull")
        except StoreUnavailable as exc:
            self.metrics.observe(503)
            return store_unavailable(exc)
        if wants(NDJSON):
            state, subscription = self.jobs.subscribe(job.id)
            return JobRoutes(self).stream(job.id, state, subscription)
        self.jobs.wait(job.id)
        if job.report is None:
            if job.status != "failed":  # stopped by a shutdown; it resumes at the next start
                return _error(503, "the server is shutting down; the job %s resumes at its next start" % job.id,
                              None, {"Retry-After": "5"})
            self.metrics.observe(503)
            daemon = "runtime_endpoint" if self.config.runtime_endpoint else "docker_socket"
            return _error(503, job.error, daemon, {"Retry-After": "5"})
        status = 200 if job.status == SUCCEEDED else 500
        self.metrics.observe(status, job.report)
        return _json(status, job.report)
