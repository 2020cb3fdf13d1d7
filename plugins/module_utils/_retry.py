# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How long to wait between attempts: capped exponential backoff with jitter."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
from collections import namedtuple

DEFAULT_ATTEMPTS = 3
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 10.0


class RetryPolicy(namedtuple("RetryPolicy", "attempts base cap")):
    """``attempts`` in all (1 = no retry); delays grow ``base * 2**n`` up to ``cap``.

    Jitter ("equal jitter": half fixed, half random) keeps many hosts that
    failed together from hammering the registry together on the next try.
    """

    __slots__ = ()

    def __new__(cls, attempts=DEFAULT_ATTEMPTS, base=DEFAULT_BACKOFF_BASE, cap=DEFAULT_BACKOFF_CAP):
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        if base < 0 or cap < 0:
            raise ValueError("backoff must not be negative")
        return super(RetryPolicy, cls).__new__(cls, int(attempts), float(base), float(cap))

    def delay(self, failed_attempt, rng=random.random):
        """Seconds to wait after attempt number ``failed_attempt`` (1-based) failed."""
        ceiling = min(self.cap, self.base * (2 ** (failed_attempt - 1)))
        return ceiling / 2 + rng() * ceiling / 2

    def should_retry(self, failed_attempt, error):
        """Whether attempt ``failed_attempt + 1`` should happen after ``error``."""
        return failed_attempt < self.attempts and getattr(error, "retryable", False)
