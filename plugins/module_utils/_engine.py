# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pull engine: many images, bounded concurrency, retries, one result row each.

The HTTP server, the CLI and the Ansible module all drive this class. It knows
the container runtime only through the seam of ``_runtime`` (the Docker API by
default, the CRI on Kubernetes nodes): concurrency comes from a *runner* the caller
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

from ._attempt import Attempt
from ._credentials import RegistryLookups
from ._daemon import docker_base_url
from ._errors import PullFailed
from ._godur import format_duration, rfc3339_now
from ._request import POLICY_MISSING
from ._retry import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, RetryPolicy
from ._runtime import held, tag_key
from ._runtime_docker import DockerRuntime
from ._shared import STATUS_CANCELLED, STATUS_FAILED, STATUS_PULLED, Outcome, Participant, SharedPulls

DEFAULT_DEADLINE = 30 * 60.0
DEFAULT_MAX_DAEMON_PULLS = 32
DEFAULT_DAEMON_TIMEOUT = 10.0
DEFAULT_STALL_TIMEOUT = 120.0
# The listing of local images after the pulls gets at most this long: a hung
# daemon must not hold the answer past the request's deadline.
LISTING_GRACE = 2.0

STATUS_UP_TO_DATE = "up_to_date"
STATUS_PRESENT = "present"  # pull: missing, and the image was there: nothing asked of the registry
STATUS_WOULD_PULL = "would_pull"  # dry run, image absent

log = logging.getLogger("puller.engine")


class EngineConfig(namedtuple("EngineConfig", "docker_host api_version deadline max_daemon_pulls "
                                              "daemon_timeout backoff_base backoff_cap stall_timeout tls")):
    """Frozen engine settings; build it with keyword arguments."""

    __slots__ = ()

    def __new__(cls, docker_host=None, api_version="auto", deadline=DEFAULT_DEADLINE,
                max_daemon_pulls=DEFAULT_MAX_DAEMON_PULLS, daemon_timeout=DEFAULT_DAEMON_TIMEOUT,
                backoff_base=DEFAULT_BACKOFF_BASE, backoff_cap=DEFAULT_BACKOFF_CAP,
                stall_timeout=DEFAULT_STALL_TIMEOUT, tls=None):
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        if max_daemon_pulls < 1:
            raise ValueError("max_daemon_pulls must be >= 1")
        return super(EngineConfig, cls).__new__(
            cls, docker_base_url(docker_host), api_version or "auto", float(deadline),
            int(max_daemon_pulls), float(daemon_timeout), float(backoff_base), float(backoff_cap),
            float(stall_timeout) if stall_timeout else None, tls)


class PullEvent(namedtuple("PullEvent", "kind reference attempt detail")):
    """What the engine reports while it works.

    kind: ``attempt`` (an attempt starts), ``started`` (it holds a daemon
    slot: the daemon works on it now), ``progress`` (detail: layer,
    phase, current and total bytes), ``layer`` (a layer's phase changed, no
    byte counts; ``done`` says it is complete), ``retry`` (detail: error,
    delay), ``done`` (detail: a ``Done``).
    """

    __slots__ = ()


class Done(namedtuple("Done", "status attempts error digest extra cost")):
    """The detail of a ``done`` event: how an image ended, and how long it took."""

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


ROW_FIELDS = ("image", "tag", "project", "cost", "retried", "errmsg", "digest", "id", "previous_id", "status")


def row_reference(row):
    """``image:tag`` of a result row, as a person would write it."""
    name = row["image"]
    if "@" in name or ":" in name.rsplit("/", 1)[-1]:
        return name
    sep = "@" if ":" in row["tag"] else ":"  # a digest; a tag has no colon
    return name + sep + row["tag"]


def _row(spec, outcome, cost, before, after, can_tag):
    previous = before.get(tag_key(spec.ref, can_tag))  # what the name pointed at (a pinned tag: its old image)
    current, status = held(spec.ref, after, can_tag), outcome.status
    if status == STATUS_PULLED and current is not None and current == previous:
        status = STATUS_UP_TO_DATE
    row = {
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
    row.update(row_extra(outcome.extra, status == STATUS_FAILED))
    return row


def row_extra(extra, failed):
    """The fields a row gains from what its attempts noted (``Outcome.extra``)."""
    extra, fields = extra or {}, {}
    if not failed and extra.get("source"):
        fields["source"] = extra["source"]  # the endpoint that served it: a mirror, or the origin
    if extra.get("mirrors"):
        fields["mirrors"] = [dict(entry) for entry in extra["mirrors"]]  # the mirrors skipped, and what they said
    if extra.get("note"):
        fields["note"] = extra["note"]
    for field, value in (extra.get("fields") or {}).items():
        if field not in ROW_FIELDS:  # the runtime's own (watch.record), never over the contract's fields
            fields.setdefault(field, value)
    return fields


class Engine:
    """Pulls images through one Docker daemon. Thread-safe; share one per process.

    ``observer``, when set, receives every daemon attempt and retry once
    (metrics), whatever number of requests shares them; a request's own
    ``on_event`` receives them numbered as its own attempts.
    """

    def __init__(self, config, clock=time.monotonic, observer=None, credentials=None, runtime=None):
        self.config = config
        self.observer = observer
        self.credentials = credentials  # for images without auth_config: an object with lookup(registry)
        # Below the seam (``_runtime``): the Docker API at config.docker_host unless another is given.
        self.runtime = runtime if runtime is not None else DockerRuntime(
            config.docker_host, api_version=config.api_version, timeout=config.daemon_timeout, tls=config.tls,
            max_pool_size=max(64, 2 * config.max_daemon_pulls), backstop=config.deadline + config.daemon_timeout)
        self._clock = clock
        self._slots = threading.BoundedSemaphore(config.max_daemon_pulls)
        self._policy = RetryPolicy(1, config.backoff_base, config.backoff_cap)
        attempt = Attempt(self.runtime, self._slots, stall_timeout=config.stall_timeout, clock=clock)
        self._shared = SharedPulls(attempt, self._policy.delay, clock=clock, observer=self._observe)

    # -- the runtime ------------------------------------------------------
    def check_daemon(self, timeout=None):
        """Raise ``DaemonUnavailable`` unless the runtime answers (within ``timeout``)."""
        self.runtime.check(timeout)

    def local_images(self, timeout=None):
        """``{reference: image ID}`` for every tag and digest the runtime holds."""
        return self.runtime.local_images(timeout)

    def local_platform(self, ref):
        """``os/arch[/variant]`` of the local image for ``ref``, or None."""
        return self.runtime.local_platform(ref)

    def daemon_info(self):
        """Which engine answers, for ``/debug/dump``."""
        return self.runtime.info()

    def in_flight(self):
        """The pulls running now, for ``/debug/dump`` (no credentials)."""
        return [dict(image=str(key[0]), **info) for key, info in self._shared.snapshot()]

    # -- pulling ----------------------------------------------------------
    def pull(self, request, runner=run_in_threads, on_event=None, cancel=None):
        """Pull every spec of a ``PullRequest``; return a ``PullReport``.

        Raises ``DaemonUnavailable`` before pulling anything when the daemon
        is down; any later failure is a per-image row, never an exception.
        ``cancel`` (an Event) makes images not yet done end as ``cancelled``
        and aborts their daemon streams.
        """
        start_at, started = rfc3339_now(), self._clock()
        deadline = min(request.deadline or self.config.deadline, self.config.deadline)
        # The daemon's checks before and after the pulls are bounded too, so a
        # hung daemon cannot hold the answer long past the request's deadline.
        quick = min(self.config.daemon_timeout, max(deadline, LISTING_GRACE))
        self.check_daemon(timeout=quick)
        before = self.local_images(timeout=quick)
        specs = request.specs
        # Credentials are looked up inside each image's work, under its deadline (see _with_credentials).
        lookups = RegistryLookups(self.credentials, cancel) if self.credentials is not None else None
        keys = [_flight_key(s) for s in specs]
        unique = {}
        for key, spec in zip(keys, specs):
            unique.setdefault(key, spec)

        def pull_unique(item):
            key, spec = item
            t0 = self._clock()
            outcome = self._without_pull(spec, request, before) \
                if request.dry_run or request.policy == POLICY_MISSING else None
            if outcome is None and cancel is not None and cancel.is_set():
                outcome = Outcome(STATUS_CANCELLED, 0, "cancelled", None)
            if outcome is None:
                spec, outcome = self._with_credentials(spec, lookups, deadline, cancel)
            if outcome is None:  # the lookup's time counts against the image's deadline
                outcome = self._pull_shared(_flight_key(spec), spec, request.attempts, deadline, on_event, cancel,
                                            budget=deadline - (self._clock() - t0))
            cost = self._clock() - t0
            self._emit(on_event, "done", spec.ref, outcome.attempts, Done(*(tuple(outcome) + (cost,))))
            return key, outcome, cost

        size = min(request.concurrency, len(unique))
        results = {key: (outcome, cost) for key, outcome, cost in runner(pull_unique, list(unique.items()), size)}
        after = before if request.dry_run else self.local_images(
            timeout=min(self.config.daemon_timeout, LISTING_GRACE))
        success, failure = [], []
        for key, spec in zip(keys, specs):
            outcome, cost = results[key]
            row = _row(spec, outcome, cost, before, after, self.runtime.can_tag)
            if spec.platform and row["status"] != STATUS_FAILED and not request.dry_run:
                row["platform"] = self.local_platform(spec.ref) or ""  # what the daemon holds now
            (failure if outcome.status in (STATUS_FAILED, STATUS_CANCELLED) else success).append(row)
        return PullReport(success, failure, start_at, self._clock() - started)

    @staticmethod
    def _with_credentials(spec, lookups, deadline, cancel):
        """``(spec, outcome)``: a spec without an ``auth_config`` gets the
        configured credentials for its registry, asked once per request and
        within this image's ``deadline`` (a credential helper that hangs is
        killed with it, or on ``cancel``); ``outcome`` is not None when the
        lookup ends the image."""
        if lookups is None or spec.auth_config:
            return spec, None
        try:
            found = lookups.lookup(spec.ref.domain, deadline)
        except PullFailed as exc:
            if cancel is not None and cancel.is_set():
                return spec, Outcome(STATUS_CANCELLED, 0, "cancelled", None)
            return spec, Outcome(STATUS_FAILED, 1, exc.message, None)
        return spec._replace(auth_config=found), None

    def _pull_shared(self, key, spec, attempts, deadline, on_event, cancel, budget=None):
        ref = spec.ref

        def emit(kind, attempt, detail):
            self._emit(on_event, kind, ref, attempt, detail)

        # budget: what is left of the deadline once the credentials were looked up
        participant = Participant(
            deadline if budget is None else budget, attempts,
            "timeout: pull of %s exceeded the deadline of %s" % (ref, format_duration(deadline)),
            clock=self._clock, emit=emit, cancel=cancel)
        outcome = self._shared.pull(key, participant, spec)
        log.info("pull %s: %s after %d attempt(s)%s", ref, outcome.status, outcome.attempts,
                 ": " + outcome.error if outcome.error else "")
        return outcome

    def _emit(self, on_event, kind, ref, attempt=None, detail=None):
        if on_event is None:
            return
        try:
            on_event(PullEvent(kind, str(ref), attempt, detail))
        except Exception:  # pylint: disable=broad-except
            log.exception("event callback failed; the pull goes on")

    def _observe(self, kind, flight, detail):
        if self.observer is not None:
            self._emit(self.observer, kind, flight.payload.ref, flight.attempt, detail)

    def _without_pull(self, spec, request, before):
        """The outcome when no pull is needed (present) or wanted (dry run), else None.

        With a ``platform``, an image present for another platform is missing
        (as community.docker's ``not_present`` decides)."""
        if held(spec.ref, before, self.runtime.can_tag) is not None and (
                not spec.platform or _same_platform(spec.platform, self.local_platform(spec.ref))):
            return Outcome(STATUS_PRESENT, 0, None, None)
        if request.dry_run:
            return Outcome(STATUS_WOULD_PULL, 0, None, None)
        return None


def _same_platform(wanted, present):
    """``linux/arm64`` matches ``linux/arm64/v8``; ``linux/amd64/v2`` wants that variant."""
    if not present:
        return False
    want, have = wanted.split("/"), present.split("/")
    return have[:len(want)] == want


def _flight_key(spec):
    """Same reference, credentials and mirrors: one pull serves them all."""
    mirrors = tuple((m.host, tuple(sorted(m.auth_config.items())), m.trusted) for m in spec.mirrors)
    return (spec.ref, tuple(sorted(spec.auth_config.items())), mirrors, spec.platform)
