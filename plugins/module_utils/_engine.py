# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull engine: many images, bounded concurrency, retries, one result row each.

The HTTP server, the CLI and the Ansible module all drive this class. It only
needs the ``docker`` library: concurrency comes from a *runner* the caller
passes in (a gevent pool in the server, threads elsewhere), and the locks and
sleeps below are the ``threading``/``time`` ones, which gevent's monkey
patching turns green in the server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

from ._daemon import (
    APIError,
    DockerException,
    RequestTimeout,
    TrackingClient,
    abort_response,
    docker_base_url,
)
from ._errors import DaemonUnavailable, DeadlineExceeded, PullFailed, TransientPullError, pull_error
from ._godur import format_duration, rfc3339_now
from ._redact import redact, secrets_of
from ._reference import InvalidReference, parse_reference
from ._request import POLICY_MISSING
from ._retry import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, RetryPolicy
from ._singleflight import SingleFlight

DEFAULT_DEADLINE = 30 * 60.0
DEFAULT_MAX_DAEMON_PULLS = 32
DEFAULT_DAEMON_TIMEOUT = 10.0

STATUS_PULLED = "pulled"
STATUS_UP_TO_DATE = "up_to_date"
STATUS_FAILED = "failed"
STATUS_PRESENT = "present"  # pull: missing, and the image was there: nothing asked of the registry
STATUS_WOULD_PULL = "would_pull"  # dry run, image absent

log = logging.getLogger("puller.engine")


class EngineConfig(namedtuple("EngineConfig", "docker_host api_version deadline max_daemon_pulls "
                                              "daemon_timeout backoff_base backoff_cap")):
    """Frozen engine settings; build it with keyword arguments."""

    __slots__ = ()

    def __new__(cls, docker_host=None, api_version="auto", deadline=DEFAULT_DEADLINE,
                max_daemon_pulls=DEFAULT_MAX_DAEMON_PULLS, daemon_timeout=DEFAULT_DAEMON_TIMEOUT,
                backoff_base=DEFAULT_BACKOFF_BASE, backoff_cap=DEFAULT_BACKOFF_CAP):
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        if max_daemon_pulls < 1:
            raise ValueError("max_daemon_pulls must be >= 1")
        return super(EngineConfig, cls).__new__(
            cls, docker_base_url(docker_host), api_version or "auto", float(deadline),
            int(max_daemon_pulls), float(daemon_timeout), float(backoff_base), float(backoff_cap))


class PullEvent(namedtuple("PullEvent", "kind reference attempt detail")):
    """What the engine reports while it works.

    kind: ``attempt`` (an attempt starts), ``progress`` (detail: layer,
    current, total bytes), ``retry`` (detail: error, delay), ``done``
    (detail: the outcome).
    """

    __slots__ = ()


class Outcome(namedtuple("Outcome", "status attempts error digest")):
    """How one unique pull ended; shared by every entry that asked for it.

    ``status`` is ``pulled`` for any successful pull; whether the image really
    changed (``pulled``) or not (``up_to_date``) is decided per request from
    its before and after listings of the local images.
    """

    __slots__ = ()


class PullReport(namedtuple("PullReport", "success failure start_at cost")):
    """Rows in request order, split as the original API splits them."""

    __slots__ = ()

    @property
    def ok(self):
        return not self.failure

    def as_dict(self):
        return {"success": self.success, "failure": self.failure,
                "startAt": self.start_at, "cost": format_duration(self.cost)}


def run_in_threads(fn, items, size):
    """The default runner: ``fn`` over ``items`` with at most ``size`` threads."""
    with ThreadPoolExecutor(max_workers=max(1, size)) as pool:
        return list(pool.map(fn, items))


def row_reference(row):
    """``image:tag`` of a result row, as a person would write it."""
    name = row["image"]
    if "@" in name or ":" in name.rsplit("/", 1)[-1]:
        return name
    sep = "@" if row["tag"].startswith("sha256:") else ":"
    return name + sep + row["tag"]


def _row(spec, outcome, cost, before, after):
    key = _local_key(spec.ref)
    previous, current, status = before.get(key), after.get(key), outcome.status
    if status == STATUS_PULLED and current is not None and current == previous:
        status = STATUS_UP_TO_DATE
    return {
        "image": spec.image,
        "tag": spec.tag,
        "project": spec.project,
        "cost": format_duration(cost),
        "retried": outcome.attempts,
        "errmsg": outcome.error or "",
        "digest": outcome.digest or "",
        "id": (current or "") if status != STATUS_FAILED else "",
        "previous_id": previous or "",
        "status": status,
    }


def _local_key(ref):
    """How the daemon lists a reference: by digest when pinned, else by tag."""
    return str(ref._replace(tag=None)) if ref.digest else str(ref)


class Engine:
    """Pulls images through one Docker daemon. Thread-safe; share one per process."""

    def __init__(self, config, clock=time.monotonic, sleep=time.sleep):
        self.config = config
        self._clock = clock
        self._sleep = sleep
        self._client_lock = threading.Lock()
        self._client = None
        self._slots = threading.BoundedSemaphore(config.max_daemon_pulls)
        self._flights = SingleFlight()

    # -- the daemon -------------------------------------------------------
    def client(self):
        """The shared APIClient, made on first use so a late daemon is fine."""
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = TrackingClient(
                        base_url=self.config.docker_host, version=self.config.api_version,
                        timeout=self.config.daemon_timeout,
                        max_pool_size=max(64, 2 * self.config.max_daemon_pulls))
                except DockerException as exc:
                    raise DaemonUnavailable("cannot reach the Docker daemon at %s: %s"
                                            % (self.config.docker_host, exc))
            return self._client

    def check_daemon(self):
        """Raise ``DaemonUnavailable`` unless the daemon answers ``/_ping``."""
        try:
            self.client().ping()
        except DaemonUnavailable:
            raise
        except Exception as exc:  # requests' ConnectionError, APIError, socket errors
            raise DaemonUnavailable("cannot reach the Docker daemon at %s: %s" % (self.config.docker_host, exc))

    def local_images(self):
        """``{reference: image ID}`` for every tag and digest the daemon holds.

        One listing per request, before and after, instead of two inspects per
        image: inspects queue behind the image store's lock while pulls
        register layers, which slowed every pull down.
        """
        index = {}
        try:
            images = self.client().images()
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("cannot list local images (statuses will say pulled): %s", exc)
            return index
        for image in images:
            for name in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
                try:
                    index[_local_key(parse_reference(name))] = image["Id"]
                except InvalidReference:
                    pass  # "<none>:<none>" and the like
        return index

    def in_flight(self):
        """The pulls running now, for ``/debug/dump`` (no credentials)."""
        return [dict(image=str(key[0]), **info) for key, info in self._flights.snapshot()]

    # -- pulling ----------------------------------------------------------
    def pull(self, request, runner=run_in_threads, on_event=None):
        """Pull every spec of a ``PullRequest``; return a ``PullReport``.

        Raises ``DaemonUnavailable`` before pulling anything when the daemon
        is down; any later failure is a per-image row, never an exception.
        """
        start_at, started = rfc3339_now(), self._clock()
        self.check_daemon()
        before = self.local_images()
        policy = RetryPolicy(request.attempts, self.config.backoff_base, self.config.backoff_cap)
        unique = {}
        for spec in request.specs:
            unique.setdefault(_flight_key(spec), spec)

        deadline = min(request.deadline or self.config.deadline, self.config.deadline)

        def pull_unique(item):
            key, spec = item
            t0 = self._clock()
            outcome = self._without_pull(spec, request, before) \
                if request.dry_run or request.policy == POLICY_MISSING else None
            if outcome is None:
                outcome = self._flights.do(key, lambda: self._pull_with_retries(spec, policy, deadline, on_event))
            return key, outcome, self._clock() - t0

        size = min(request.concurrency, len(unique))
        results = {key: (outcome, cost) for key, outcome, cost in runner(pull_unique, list(unique.items()), size)}
        after = self.local_images() if not request.dry_run else before
        success, failure = [], []
        for spec in request.specs:
            outcome, cost = results[_flight_key(spec)]
            row = _row(spec, outcome, cost, before, after)
            (failure if outcome.status == STATUS_FAILED else success).append(row)
        return PullReport(success, failure, start_at, self._clock() - started)

    def _emit(self, on_event, kind, ref, attempt=None, detail=None):
        if on_event is None:
            return
        try:
            on_event(PullEvent(kind, str(ref), attempt, detail))
        except Exception:  # pylint: disable=broad-except
            log.exception("event callback failed; the pull goes on")

    @staticmethod
    def _without_pull(spec, request, before):
        """The outcome when no pull is needed (present) or wanted (dry run), else None."""
        if _local_key(spec.ref) in before:
            return Outcome(STATUS_PRESENT, 0, None, None)
        if request.dry_run:
            return Outcome(STATUS_WOULD_PULL, 0, None, None)
        return None

    def _pull_with_retries(self, spec, policy, deadline, on_event):
        ref, secrets = spec.ref, secrets_of(spec.auth_config)
        t0 = self._clock()
        deadline_at = t0 + deadline
        attempt, error, digest = 0, None, None
        while True:
            attempt += 1
            self._flights.note(_flight_key(spec), attempt=attempt)
            self._emit(on_event, "attempt", ref, attempt)
            a0 = self._clock()
            try:
                digest = self._attempt(spec, deadline_at, deadline, secrets, on_event, attempt)
                error = None
            except PullFailed as exc:
                error = exc
            log.info("pull %s attempt %d/%d %s in %s", ref, attempt, policy.attempts,
                     "ok" if error is None else "failed (%s): %s" % (
                         "retryable" if error.retryable else "permanent", error.message),
                     format_duration(self._clock() - a0))
            if error is None or not policy.should_retry(attempt, error):
                break
            remaining = deadline_at - self._clock()
            delay = policy.delay(attempt)
            if delay >= remaining:
                break
            self._emit(on_event, "retry", ref, attempt, {"error": error.message, "delay": delay})
            self._sleep(delay)
        if error is not None:
            outcome = Outcome(STATUS_FAILED, attempt, error.message, None)
        else:
            outcome = Outcome(STATUS_PULLED, attempt, None, digest)
        self._emit(on_event, "done", ref, attempt, outcome)
        return outcome

    def _attempt(self, spec, deadline_at, deadline, secrets, on_event, attempt):
        """One pull through the daemon; returns the digest or raises PullFailed."""
        remaining = deadline_at - self._clock()
        if remaining <= 0 or not self._slots.acquire(timeout=remaining):
            raise DeadlineExceeded("timeout: no pull slot free within the deadline of %s"
                                   % format_duration(deadline))
        try:
            try:
                client = self.client()
            except DaemonUnavailable as exc:
                raise TransientPullError(str(exc))
            client.set_request_timeout(max(0.001, deadline_at - self._clock()))
            watchdog = _Watchdog(deadline_at - self._clock())
            try:
                return self._stream(client, spec, on_event, attempt, watchdog, secrets, deadline)
            finally:
                watchdog.cancel()
                abort_response(client.take_response())
        finally:
            self._slots.release()

    def _stream(self, client, spec, on_event, attempt, watchdog, secrets, deadline):
        ref, digest = spec.ref, None
        timeout_msg = "timeout: pull of %s exceeded the deadline of %s" % (ref, format_duration(deadline))
        try:
            events = client.pull(ref.name, tag=ref.pull_tag, stream=True, decode=True,
                                 auth_config=dict(spec.auth_config))
            watchdog.arm(client.current_response())
            for event in events:
                if "error" in event or "errorDetail" in event:
                    detail = event.get("errorDetail") or {}
                    message = detail.get("message") or event.get("error") or "unknown error"
                    raise pull_error(redact(message, secrets))
                status = event.get("status") or ""
                if status.startswith("Digest: "):
                    digest = status[len("Digest: "):].strip()
                progress = event.get("progressDetail") or {}
                if on_event is not None and progress.get("total"):
                    self._emit(on_event, "progress", ref, attempt, {
                        "layer": event.get("id"), "current": progress.get("current", 0),
                        "total": progress["total"], "phase": status})
        except PullFailed:
            raise
        except APIError as exc:
            if watchdog.fired:
                raise DeadlineExceeded(timeout_msg)
            raise pull_error(redact(exc.explanation or str(exc), secrets), exc.status_code)
        except Exception as exc:  # the stream broke: daemon restart, reset, timeout
            if watchdog.fired or isinstance(exc, RequestTimeout):
                raise DeadlineExceeded(timeout_msg)
            raise TransientPullError(redact("error talking to the Docker daemon: %s" % (exc,), secrets))
        if watchdog.fired:
            raise DeadlineExceeded(timeout_msg)
        return digest


def _flight_key(spec):
    """Same reference and same credentials: one pull serves them all."""
    return (spec.ref, tuple(sorted(spec.auth_config.items())))


class _Watchdog:
    """Aborts the stream in flight when the image's deadline passes."""

    def __init__(self, seconds):
        self.fired = False
        self._response = None
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def arm(self, response):
        self._response = response
        if self.fired:
            abort_response(response)

    def _fire(self):
        self.fired = True
        abort_response(self._response)

    def cancel(self):
        self._timer.cancel()
