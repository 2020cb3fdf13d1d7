# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One attempt of a shared pull: a daemon slot, the pull stream, its watchdog.

An attempt serves every participant of its flight, so it is bounded by the
flight's *latest* deadline among those still waiting, and abandoned (its
daemon stream closed) the moment nobody waits any more.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading
import time

from ._daemon import APIError, RequestTimeout, abort_connection, abort_response
from ._errors import (DaemonUnavailable, DeadlineExceeded, PermanentPullError, PullFailed, TransientPullError,
                      pull_error)
from ._mirrors import mirror_name
from ._godur import format_duration
from ._redact import redact, secrets_of
from ._stream import KIND_DIGEST, KIND_ERROR, KIND_LAYER, KIND_PROGRESS, read_event

log = logging.getLogger("puller.engine")

# The origin's answer about a tag's digest is one manifest request: it gets at
# most this long before the mirrors are used without it.
ORIGIN_CHECK_TIMEOUT = 15.0
# A mirror's pull gets at most this share of the time left to the deadline
# when it starts (each mirror in turn: 1/2, then 1/4, ...), so that a mirror
# that hangs mid-blob leaves the next mirror or the origin the rest instead of
# using it all up under the stall timeout.
MIRROR_SHARE = 0.5


class DaemonAttempt:
    """``attempt(flight)``: pull ``flight.payload`` (a ``PullSpec``) once.

    ``client`` returns the shared ``TrackingClient``; ``slots`` is the
    server-wide semaphore of daemon pulls; ``backstop`` is a read timeout
    that only matters if the watchdog itself failed.
    """

    def __init__(self, client, slots, backstop, stall_timeout=None, clock=time.monotonic):
        self._client = client
        self._slots = slots
        self._backstop = backstop
        self._stall_timeout = stall_timeout
        self._clock = clock

    def __call__(self, flight):
        """One pull through the daemon; returns the digest or raises PullFailed."""
        spec = flight.payload
        a0 = self._clock()
        try:
            digest = self._attempt_with_slot(flight, spec)
        except PullFailed as exc:
            log.info("pull %s attempt %d/%d failed (%s) in %s: %s", spec.ref, flight.attempt, flight.budget(),
                     "retryable" if exc.retryable else "permanent", format_duration(self._clock() - a0), exc.message)
            raise
        log.info("pull %s attempt %d/%d ok in %s", spec.ref, flight.attempt, flight.budget(),
                 format_duration(self._clock() - a0))
        return digest

    def _attempt_with_slot(self, flight, spec):
        timeout_msg = "timeout: no pull slot free within the deadline"
        while True:  # in slices, so that an abandoned flight stops waiting
            remaining = flight.deadline_at() - self._clock()
            if remaining <= 0 or not flight.active():
                raise DeadlineExceeded(timeout_msg)
            if self._slots.acquire(timeout=min(remaining, 1.0)):
                break
        flight.emit("started")  # a daemon slot is held: the daemon works on it from now on
        try:
            try:
                client = self._client()
            except DaemonUnavailable as exc:
                raise TransientPullError(str(exc))
            if spec.mirrors:
                digest = self._via_mirrors(client, flight, spec)
                if digest is not None:
                    return digest
                flight.extra["source"] = spec.ref.domain  # rows say where an image came from when it had a choice
            return self._one_pull(client, flight, spec.ref.name, spec.ref.pull_tag, spec.auth_config, spec.platform)
        finally:
            self._slots.release()

    def _one_pull(self, client, flight, name, tag, auth_config, platform=None, limit=None):
        """One daemon pull stream, under a watchdog of its own (and at most
        ``limit`` seconds long, when given)."""
        watchdog = _Watchdog(flight, self._clock, self._stall_timeout, limit)
        # The watchdog bounds the pull; the read timeout is a backstop only.
        client.begin_pull(self._backstop, watchdog.arm_connection)
        try:
            digest = self._stream(client, flight, name, tag, auth_config, watchdog, platform)
        finally:
            watchdog.cancel()
            abort_response(client.end_pull())
        return digest or _repo_digest(client, name, tag)

    # -- mirrors ------------------------------------------------------------------
    def _via_mirrors(self, client, flight, spec):
        """Try each mirror not tried yet for this image (once per image: a dead
        mirror costs one try, not the retry budget); the digest, or None to go
        to the origin."""
        ref = spec.ref
        skipped = flight.extra.setdefault("mirrors", [])
        tried = set(entry["mirror"] for entry in skipped)
        candidates = [m for m in spec.mirrors if m.host not in tried]
        if not candidates:
            return None
        digest, note = ref.digest, None
        if digest is None:
            digest, note = self._origin_digest(client, flight, spec)
        for mirror in candidates:
            if digest is None and not mirror.trusted:
                skipped.append({"mirror": mirror.host, "error": "not used: the origin could not confirm the tag's "
                                "digest, and this mirror was named in the request, not by the operator"})
                continue
            name = mirror_name(ref, mirror.host)
            share = max(0.0, flight.deadline_at() - self._clock()) * MIRROR_SHARE
            try:
                pulled = self._one_pull(client, flight, name, digest or ref.tag, mirror.auth_config, spec.platform,
                                        limit=share)
            except PullFailed as exc:
                skipped.append({"mirror": mirror.host, "error": exc.message})  # the row names it, whatever follows
                if not flight.active() or flight.deadline_at() <= self._clock():
                    raise
                log.info("pull %s: mirror %s skipped: %s", ref, mirror.host, exc.message)
                continue
            self._adopt(client, ref, name, digest)
            flight.extra.update(source=mirror.host)
            if note:
                flight.extra["note"] = note
            return digest or pulled
        return None

    def _origin_digest(self, client, flight, spec):
        """The tag's current digest from the origin (one manifest request, no
        layers), so a mirror's stale copy cannot be served; ``(digest, note)``."""
        secrets = secrets_of(spec.auth_config)
        remaining = max(0.5, min(ORIGIN_CHECK_TIMEOUT, flight.deadline_at() - self._clock()))
        try:
            with client.call_timeout(remaining):
                found = client.inspect_distribution(str(spec.ref), auth_config=dict(spec.auth_config))
            return found["Descriptor"]["digest"], None
        except APIError as exc:
            error = pull_error(redact(exc.explanation or str(exc), secrets), exc.status_code)
            if not error.retryable and exc.status_code != 404 or "manifest unknown" in error.message:
                raise PermanentPullError("at the origin: " + error.message)
            reason = error.message
        except Exception as exc:  # pylint: disable=broad-except  # unreachable origin, timeout
            reason = redact(str(exc), secrets)
        return None, "the origin could not confirm the tag's digest (%s); the mirror's tag was used" % reason

    @staticmethod
    def _adopt(client, ref, name, digest):
        """Give the image its canonical name and drop the mirror's, so that
        containers, compose files and ``docker run`` keep using the origin's."""
        pulled_as = name + ("@" + digest if digest else ":" + ref.tag)
        if ref.tag:
            client.tag(pulled_as, ref.name, ref.tag)
            client.remove_image(pulled_as, noprune=True)

    def _stream(self, client, flight, name, tag, auth_config, watchdog, platform=None):
        digest, secrets = None, secrets_of(auth_config)
        timeout_msg = "timeout: pull of %s exceeded the deadline" % (name,)
        try:
            events = client.pull(name, tag=tag, stream=True, decode=True, auth_config=dict(auth_config),
                                 platform=platform)
            watchdog.arm(client.current_response())
            for raw in events:
                watchdog.alive()
                event = read_event(raw)
                if event.kind == KIND_ERROR:
                    raise pull_error(redact(event.detail, secrets))
                if event.kind == KIND_DIGEST:
                    digest = event.detail
                elif event.kind in (KIND_PROGRESS, KIND_LAYER):
                    flight.emit(event.kind, event.detail)
        except PullFailed:
            raise
        except APIError as exc:
            if watchdog.fired:
                raise watchdog.error(timeout_msg)
            raise pull_error(redact(exc.explanation or str(exc), secrets), exc.status_code)
        except Exception as exc:  # the stream broke: daemon restart, reset, timeout
            if watchdog.fired or isinstance(exc, RequestTimeout):
                raise watchdog.error(timeout_msg)
            raise TransientPullError(redact("error talking to the Docker daemon: %s" % (exc,), secrets))
        if watchdog.fired:
            raise watchdog.error(timeout_msg)
        return digest


def _repo_digest(client, name, tag):
    """The digest from the image's ``RepoDigests``, for daemons whose stream has
    no ``Digest:`` line (Podman)."""
    if tag.startswith("sha256:"):
        return tag
    try:
        digests = client.inspect_image("%s:%s" % (name, tag)).get("RepoDigests") or []
    except Exception:  # pylint: disable=broad-except  # the row just has no digest
        return None
    for entry in digests:
        repo, _sep, digest = entry.partition("@")
        if repo == name or repo.endswith("/" + name.split("/", 1)[-1]):
            return digest
    return None


class _Watchdog:
    """Closes the daemon stream when the flight's latest deadline passes, when
    nobody waits for it any more (deadlines, cancels), or when the daemon has
    sent no event at all for the stall timeout (any event counts: extraction
    and the containerd image store report little or no byte progress)."""

    def __init__(self, flight, clock, stall_timeout=None, limit=None):
        self.fired = False
        self.reason = None
        self._flight = flight
        self._clock = clock
        self._stall_timeout = stall_timeout
        self._last_event = clock()
        self._limit = limit
        self._end = self._last_event + limit if limit is not None else None
        self._response = None
        self._connection = None
        self._stopped = False
        thread = threading.Thread(target=self._watch, name="watchdog")
        thread.daemon = True
        thread.start()

    def alive(self):
        """The daemon sent an event."""
        self._last_event = self._clock()

    def _watch(self):
        flight = self._flight
        with flight.cond:
            while not self._stopped:
                now = self._clock()
                left = flight.deadline_at() - now
                if not flight.active():
                    self.reason = "abandoned"
                elif left <= 0:
                    self.reason = "deadline"
                elif self._stall_timeout and now - self._last_event >= self._stall_timeout:
                    self.reason = "stalled"
                elif self._end is not None and now >= self._end:
                    self.reason = "limit"
                if self.reason:
                    break
                if self._stall_timeout:
                    left = min(left, self._last_event + self._stall_timeout - now)
                if self._end is not None:
                    left = min(left, self._end - now)
                flight.cond.wait(max(0.01, left))
            if self._stopped:
                return
            self.fired = True
        abort_connection(self._connection)
        abort_response(self._response)

    def error(self, timeout_message):
        """Why the stream was closed, as the attempt's error."""
        if self.reason == "abandoned":
            return TransientPullError("aborted: every request waiting for this pull left (cancelled or past "
                                      "its own deadline)")
        if self.reason == "stalled":
            return TransientPullError("stalled: the Docker daemon sent nothing for %s"
                                      % format_duration(self._stall_timeout))
        if self.reason == "limit":
            return TransientPullError("timed out after %s (a mirror gets at most half of the time left to the "
                                      "deadline)" % format_duration(round(self._limit, 1)))
        return DeadlineExceeded(timeout_message)

    def arm_connection(self, conn):
        self._connection = conn
        if self.fired:
            abort_connection(conn)

    def arm(self, response):
        self._response = response
        if self.fired:
            abort_response(response)

    def cancel(self):
        with self._flight.cond:
            self._stopped = True
            self._flight.cond.notify_all()
