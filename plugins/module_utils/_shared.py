# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared pulls: one daemon pull per image at a time, each caller on its own budget.

The daemon serialises concurrent pulls of one image and still asks the
registry for the manifest once per pull, so every request that wants the same
image (same credentials) *joins* the pull in flight. Joining must not hand a
request someone else's budget, so:

- each ``Participant`` has its own deadline and attempt budget, and stops
  waiting at its own deadline (its row says timeout) while the pull goes on
  for the others;
- the flight's attempts run in a thread of their own until nobody wants
  another: the running attempt is bounded by the *latest* deadline of those
  still waiting, and a failed attempt is retried while any of them has
  attempts and time left. A joiner whose budget outlives the others' thus
  gets further attempts on the same flight, and no image is pulled twice at
  once;
- when every participant has left (deadline, cancel) the attempt in flight is
  abandoned: ``Flight.active()`` turns empty and the engine's watchdog closes
  the daemon stream.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading
import time
from collections import namedtuple

from ._errors import DeadlineExceeded, PullFailed, TransientPullError
from ._godur import rfc3339_now

STATUS_PULLED = "pulled"
STATUS_FAILED = "failed"
STATUS_CANCELLED = "cancelled"

log = logging.getLogger("puller.engine")


class Outcome(namedtuple("Outcome", "status attempts error digest extra")):
    """How one participant's pull ended (its own attempts, its own error);
    ``extra``: what the attempts noted for the row (where it came from, skipped mirrors), or None."""

    __slots__ = ()

    def __new__(cls, status, attempts, error, digest, extra=None):
        return super(Outcome, cls).__new__(cls, status, attempts, error, digest, extra)


class Participant:
    """One request's interest in a shared pull.

    ``emit(kind, attempt, detail)`` receives the flight's events numbered as
    this participant's own attempts; ``cancel`` is an Event-like object whose
    ``is_set()`` makes it leave; ``timeout_message`` is its row's text when
    its deadline passes.
    """

    def __init__(self, deadline, attempts, timeout_message, clock=time.monotonic, emit=None, cancel=None):
        self.deadline = float(deadline)
        self.deadline_at = clock() + self.deadline
        self.attempts = int(attempts)
        self.timeout_message = timeout_message
        self.emit = emit
        self.cancel = cancel
        self.first = 1
        self.active = True

    @property
    def last(self):
        return self.first + self.attempts - 1

    def mine(self, flight_attempt):
        return max(0, flight_attempt - self.first + 1)

    def wants(self, flight_attempt, at):
        return self.active and self.last >= flight_attempt and self.deadline_at > at

    def cancelled(self):
        return self.cancel is not None and self.cancel.is_set()


class Flight:
    """The pull of one key in flight; ``payload`` is what the attempt needs."""

    def __init__(self, key, payload):
        self.key = key
        self.payload = payload
        self.cond = threading.Condition()
        self.attempt = 0
        self.running = False
        self.finished = False
        self.results = []  # (attempt number, error or None, digest)
        self.participants = []
        self.started_at = rfc3339_now()
        self.extra = {}  # what the attempts note for the rows, e.g. the source of the image
        self.memo = {}  # what the runtime asks only once per shared pull, across its retries (never in rows)

    def active(self):
        return [p for p in list(self.participants) if p.active]

    def deadline_at(self):
        """The latest deadline among those still waiting (0 when none is)."""
        return max([p.deadline_at for p in self.active()] or [0.0])

    def budget(self):
        """The last attempt number anyone still waiting would accept."""
        return max([p.last for p in self.active()] or [self.attempt])

    def emit(self, kind, detail=None, who=None):
        number = self.attempt
        for p in who if who is not None else self.active():
            if p.emit is not None and p.first <= number:
                p.emit(kind, p.mine(number), detail)

    def snapshot(self):
        return {"started_at": self.started_at, "attempt": self.attempt, "waiters": len(self.active())}


class SharedPulls:
    """``pull(key, participant, payload)``: join or start the flight for ``key``.

    ``attempt(flight)`` makes one attempt and returns a digest or raises
    ``PullFailed``; ``delay(n)`` is the backoff after failed attempt ``n``;
    ``observer(kind, flight, detail)``, if given, hears of each attempt and
    retry once, however many participants share them.
    """

    def __init__(self, attempt, delay, clock=time.monotonic, observer=None):
        self._attempt = attempt
        self._delay = delay
        self._clock = clock
        self._observer = observer
        self._lock = threading.Lock()
        self._flights = {}

    def pull(self, key, participant, payload=None):
        while True:
            flight = self._join(key, participant, payload)
            outcome = self._await(flight, participant)
            if outcome is not None:
                return outcome
            # The flight ended just before it could make an attempt for us.

    def snapshot(self):
        """``[(key, info), ...]`` for the flights running now."""
        with self._lock:
            flights = list(self._flights.items())
        return [(key, flight.snapshot()) for key, flight in flights]

    # -- the waiting side -----------------------------------------------------------
    def _join(self, key, participant, payload):
        with self._lock:
            flight = self._flights.get(key)
            new = flight is None
            if new:
                flight = self._flights[key] = Flight(key, payload)
            with flight.cond:
                joined_running = flight.running
                participant.first = flight.attempt if joined_running else flight.attempt + 1
                participant.active = True
                flight.participants.append(participant)
                flight.cond.notify_all()
        if joined_running:  # its own first attempt is the one running now
            flight.emit("attempt", who=[participant])
        if new:
            worker = threading.Thread(target=self._run, args=(flight,), name="pull %s" % (key[0],))
            worker.daemon = True
            worker.start()
        return flight

    def _await(self, flight, p):
        seen, last_error = 0, None
        with flight.cond:
            while True:
                while seen < len(flight.results):
                    number, error, digest = flight.results[seen]
                    seen += 1
                    if number < p.first:
                        continue
                    if error is None:
                        return self._leave(flight, p, Outcome(STATUS_PULLED, p.mine(number), None, digest,
                                                              dict(flight.extra) or None))
                    last_error = (number, error)
                    if not error.retryable or number >= p.last:
                        return self._leave(flight, p, self._failed(flight, p, number, error))
                if flight.finished:
                    if last_error is None:
                        self._leave(flight, p, None)
                        return None
                    return self._leave(flight, p, self._failed(flight, p, *last_error))
                now = self._clock()
                if p.cancelled():
                    return self._leave(flight, p, Outcome(STATUS_CANCELLED, p.mine(flight.attempt), "cancelled", None))
                if now >= p.deadline_at:
                    return self._leave(flight, p, Outcome(STATUS_FAILED, max(1, p.mine(flight.attempt)),
                                                          p.timeout_message, None))
                wait = p.deadline_at - now
                flight.cond.wait(min(wait, 0.25) if p.cancel is not None else wait)

    @staticmethod
    def _failed(flight, p, number, error):
        message = p.timeout_message if isinstance(error, DeadlineExceeded) else error.message
        return Outcome(STATUS_FAILED, p.mine(number), message, None, dict(flight.extra) or None)

    @staticmethod
    def _leave(flight, p, outcome):
        p.active = False
        flight.cond.notify_all()  # the watchdog rechecks who is left
        return outcome

    # -- the pulling side -----------------------------------------------------------
    def _finish_unless(self, flight, keep_going):
        """Atomically with joins: end the flight unless ``keep_going()``."""
        with self._lock:
            with flight.cond:
                if keep_going():
                    return False
                flight.finished = True
                if self._flights.get(flight.key) is flight:
                    del self._flights[flight.key]
                flight.cond.notify_all()
                return True

    def _notify(self, kind, flight, detail=None):
        if self._observer is not None:
            try:
                self._observer(kind, flight, detail)
            except Exception:  # pylint: disable=broad-except
                log.exception("observer failed; the pull goes on")

    def _run(self, flight):
        try:
            self._attempts(flight)
        finally:
            self._finish_unless(flight, lambda: False)

    def _attempts(self, flight):
        while not self._finish_unless(flight, lambda: bool(flight.active())):
            with flight.cond:
                flight.attempt += 1
                flight.running = True
                number = flight.attempt
            flight.emit("attempt")
            self._notify("attempt", flight)
            error, digest = None, None
            try:
                digest = self._attempt(flight)
            except PullFailed as exc:
                error = exc
            except Exception as exc:  # pylint: disable=broad-except
                log.exception("unexpected error in a pull attempt")
                error = TransientPullError("unexpected error: %s" % (exc,))
            with flight.cond:
                flight.running = False
                flight.results.append((number, error, digest))
                flight.cond.notify_all()
            if error is None or not error.retryable:
                return
            delay = self._delay(number)
            retry_at = self._clock() + delay
            wanting = []
            if self._finish_unless(flight, lambda: wanting.extend(
                    p for p in flight.active() if p.wants(number + 1, retry_at)) or bool(wanting)):
                return
            detail = {"error": error.message, "delay": delay}
            flight.emit("retry", detail, who=wanting)
            self._notify("retry", flight, detail)
            with flight.cond:
                while flight.active() and self._clock() < retry_at:
                    flight.cond.wait(retry_at - self._clock())
