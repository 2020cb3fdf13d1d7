# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One attempt of a shared pull: a runtime slot, the runtime's pull, its watchdog.

An attempt serves every participant of its flight, so it is bounded by the
flight's *latest* deadline among those still waiting, and abandoned (the
runtime's pull aborted) the moment nobody waits any more. It knows the
runtime only through the seam (``_runtime.Runtime``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading
import time

from ._errors import DeadlineExceeded, PullFailed, TransientPullError
from ._mirrors import mirror_name
from ._godur import format_duration
from ._redact import redact, secrets_of

log = logging.getLogger("puller.engine")

# The origin's answer about a tag's digest is one manifest request: it gets at
# most this long before the mirrors are used without it.
ORIGIN_CHECK_TIMEOUT = 15.0
# A mirror's pull gets at most this share of the time left to the deadline
# when it starts (each mirror in turn: 1/2, then 1/4, ...), so that a mirror
# that hangs mid-blob leaves the next mirror or the origin the rest instead of
# using it all up under the stall timeout.
MIRROR_SHARE = 0.5


class Attempt:
    """``attempt(flight)``: pull ``flight.payload`` (a ``PullSpec``) once through ``runtime``.

    ``slots`` is the server-wide semaphore of runtime pulls.
    """

    def __init__(self, runtime, slots, stall_timeout=None, clock=time.monotonic):
        self._runtime = runtime
        self._slots = slots
        self._stall_timeout = stall_timeout
        self._clock = clock

    def __call__(self, flight):
        """One pull through the runtime; returns the digest or raises PullFailed."""
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
        flight.emit("started")  # a slot is held: the runtime works on it from now on
        try:
            if spec.mirrors:
                digest = self._via_mirrors(flight, spec)
                if digest is not None:
                    return digest
                flight.extra["source"] = spec.ref.domain  # rows say where an image came from when it had a choice
            ref = spec.ref
            digest = self._one_pull(flight, ref.name, ref.pull_tag, spec.auth_config, spec.platform)
            if ref.tag and ref.digest:  # a tag pinned to a digest: pulled by digest, then the tag is put on it
                self._pin_tag(flight, ref)
            return digest
        finally:
            self._slots.release()

    def _one_pull(self, flight, name, tag, auth_config, platform=None, limit=None):
        """One runtime pull, under a watchdog of its own (and at most ``limit`` seconds long, when given)."""
        watchdog = Watchdog(flight, self._clock, self._stall_timeout, limit, label=self._runtime.label)
        try:
            return self._runtime.pull(name, tag, auth_config, platform, watchdog)
        finally:
            watchdog.cancel()

    # -- mirrors ------------------------------------------------------------------
    def _via_mirrors(self, flight, spec):
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
            digest, note = self._origin_digest(flight, spec)
        for mirror in candidates:
            if digest is None and not mirror.trusted:
                skipped.append({"mirror": mirror.host, "error": "not used: the origin could not confirm the tag's "
                                "digest, and this mirror was named in the request, not by the operator"})
                continue
            name = mirror_name(ref, mirror.host)
            share = max(0.0, flight.deadline_at() - self._clock()) * MIRROR_SHARE
            try:
                pulled = self._one_pull(flight, name, digest or ref.tag, mirror.auth_config, spec.platform,
                                        limit=share)
            except PullFailed as exc:
                skipped.append({"mirror": mirror.host, "error": exc.message})  # the row names it, whatever follows
                if not flight.active() or flight.deadline_at() <= self._clock():
                    raise
                log.info("pull %s: mirror %s skipped: %s", ref, mirror.host, exc.message)
                continue
            if ref.tag and self._runtime.can_tag:  # containers, compose files and `docker run` keep the origin's name
                self._runtime.adopt(ref, name + ("@" + digest if digest else ":" + ref.tag), digest)
            flight.extra.update(source=mirror.host)
            if note:
                flight.extra["note"] = note
            return digest or pulled
        return None

    def _pin_tag(self, flight, ref):
        if self._runtime.can_tag:
            self._runtime.adopt(ref, "%s@%s" % (ref.name, ref.digest), ref.digest)
        else:
            flight.extra["note"] = ("%s records no tag for an image pulled by digest: it holds %s@%s, and a "
                                    "pull of the tag asks the registry for it" % (self._runtime.label, ref.name,
                                                                                  ref.digest))

    def _origin_digest(self, flight, spec):
        """The tag's current digest from the origin (one manifest request, no
        layers), so a mirror's stale copy cannot be served; ``(digest, note)``."""
        remaining = max(0.5, min(ORIGIN_CHECK_TIMEOUT, flight.deadline_at() - self._clock()))
        try:
            return self._runtime.origin_digest(spec.ref, spec.auth_config, remaining), None
        except PullFailed as exc:
            if not exc.retryable:
                raise
            reason = exc.message
        except Exception as exc:  # pylint: disable=broad-except  # unreachable origin, timeout
            reason = redact(str(exc), secrets_of(spec.auth_config))
        return None, "the origin could not confirm the tag's digest (%s); the mirror's tag was used" % reason


class Watchdog:
    """Aborts the runtime's pull when the flight's latest deadline passes, when
    nobody waits for it any more (deadlines, cancels), when the runtime has
    shown no sign of life for the stall timeout, or at ``limit``.

    It is the ``watch`` the runtime's ``pull`` receives (see ``_runtime``).
    """

    def __init__(self, flight, clock, stall_timeout=None, limit=None, label="the runtime"):
        self.fired = False
        self.reason = None
        self.memo = flight.memo
        self._flight = flight
        self._clock = clock
        self._stall_timeout = stall_timeout
        self._label = label
        self._last_event = clock()
        self._limit = limit
        self._end = self._last_event + limit if limit is not None else None
        self._aborts = []
        self._aborts_lock = threading.Lock()
        self._stopped = False
        thread = threading.Thread(target=self._watch, name="watchdog")
        thread.daemon = True
        thread.start()

    # -- what the runtime calls ----------------------------------------------------
    def alive(self):
        """The runtime showed progress."""
        self._last_event = self._clock()

    def remaining(self):
        """Seconds to the latest deadline of those waiting (the runtime's own backstop)."""
        left = self._flight.deadline_at() - self._clock()
        if self._end is not None:
            left = min(left, self._end - self._clock())
        return max(0.0, left)

    def emit(self, kind, detail):
        """A ``progress`` or ``layer`` event for every participant."""
        self._flight.emit(kind, detail)

    def record(self, field, value):
        """A field of the image's row that only this runtime knows (e.g. a copy's ``bytes_copied``)."""
        self._flight.extra.setdefault("fields", {})[field] = value

    def on_abort(self, abort):
        """``abort()`` makes the pull return at once; called now if the watchdog has already fired."""
        with self._aborts_lock:
            if not self.fired:
                self._aborts.append(abort)
                return
        _call(abort)

    def error(self, timeout_message):
        """Why the pull was aborted, as the attempt's error."""
        if self.reason == "abandoned":
            return TransientPullError("aborted: every request waiting for this pull left (cancelled or past "
                                      "its own deadline)")
        if self.reason == "stalled":
            return TransientPullError("stalled: %s sent nothing for %s"
                                      % (self._label, format_duration(self._stall_timeout)))
        if self.reason == "limit":
            return TransientPullError("timed out after %s (a mirror gets at most half of the time left to the "
                                      "deadline)" % format_duration(round(self._limit, 1)))
        return DeadlineExceeded(timeout_message)

    # -- the watch -------------------------------------------------------------------
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
        with self._aborts_lock:
            self.fired = True
            aborts, self._aborts = self._aborts, []
        for abort in aborts:
            _call(abort)

    def cancel(self):
        with self._flight.cond:
            self._stopped = True
            self._flight.cond.notify_all()


def _call(abort):
    try:
        abort()
    except Exception:  # pylint: disable=broad-except  # an abort that fails must not stop the others
        log.debug("aborting a pull failed", exc_info=True)
