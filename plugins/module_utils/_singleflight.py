# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Share one in-flight call among every caller that asks for the same key.

The daemon serialises concurrent pulls of one image on a lock of its own and
still asks the registry for the manifest once per pull; joining the pull in
flight saves both the wait and the registry round-trips.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ._godur import rfc3339_now


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error = None
        self.info = {"started_at": rfc3339_now(), "waiters": 1, "attempt": 0}


class SingleFlight:
    """``do(key, fn)`` runs ``fn`` once per key at a time; joiners get its result."""

    def __init__(self):
        self._lock = threading.Lock()
        self._flights = {}

    def do(self, key, fn):
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                flight.info["waiters"] += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = fn()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def note(self, key, **info):
        """Record progress of the flight for ``key`` (shown by ``snapshot``)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.info.update(info)

    def snapshot(self):
        """``[(key, info), ...]`` for the flights running now."""
        with self._lock:
            return [(key, dict(flight.info)) for key, flight in self._flights.items()]
