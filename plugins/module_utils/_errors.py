# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's exceptions, and which daemon errors are worth retrying.

Exception tree::

    PullerError                 base of everything the engine raises
    +-- InvalidRequest          bad input; ``field`` names it ("images[2].tag")
    |   +-- RequestForbidden    valid, but not allowed here (a mirror the server does not trust)
    +-- DaemonUnavailable       the Docker daemon cannot be reached at all
    +-- PullFailed              one image could not be pulled
        +-- PermanentPullError  retrying cannot help (auth, not found, bad ref)
        +-- TransientPullError  may work next time (5xx, resets, timeouts)
        +-- DeadlineExceeded    the image's deadline ran out

Messages never carry credentials: the engine redacts them before raising.
The edges turn these into HTTP codes, exit codes or ``fail_json``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


class PullerError(Exception):
    """Base class of all puller errors."""


class InvalidRequest(PullerError):
    """Bad input. ``field`` is a path such as ``images[2].tag``."""

    def __init__(self, message, field=None):
        super(InvalidRequest, self).__init__(message)
        self.message = message
        self.field = field


class RequestForbidden(InvalidRequest):
    """Well-formed, but this server does not allow it (HTTP 403)."""


class DaemonUnavailable(PullerError):
    """The Docker daemon did not answer."""


class PullFailed(PullerError):
    """An image failed; ``retryable`` tells whether another attempt may help."""

    retryable = False

    def __init__(self, message):
        super(PullFailed, self).__init__(message)
        self.message = message


class PermanentPullError(PullFailed):
    retryable = False


class TransientPullError(PullFailed):
    retryable = True


class DeadlineExceeded(PullFailed):
    retryable = False


# Checked first: a 5xx or rate limit is transient even when its body also
# says something that looks permanent.
_TRANSIENT_FIRST = re.compile(
    r"toomanyrequests|too many requests|status:? 5\d\d|\b5\d\d (internal server error|bad gateway|"
    r"service unavailable|gateway time-?out)",
    re.I,
)
_PERMANENT = re.compile(
    r"unauthori[sz]ed|authentication required|no basic auth credentials|incorrect username or password|"
    r"denied|forbidden|manifest unknown|name unknown|not found|does not exist|"
    r"invalid reference format|repository name must|no matching manifest|unsupported media type",
    re.I,
)


def is_retryable(message, status_code=None):
    """Decide from a daemon error whether another attempt may succeed.

    Unknown errors are retried: a spurious retry costs seconds, a missing one
    leaves a host without its image.
    """
    text = message or ""
    if _TRANSIENT_FIRST.search(text):
        return True
    if _PERMANENT.search(text):
        return False
    if status_code is not None and 400 <= status_code < 500 and status_code not in (408, 429):
        return False
    return True


def pull_error(message, status_code=None):
    """Build the typed error for a failed attempt (the one factory)."""
    if is_retryable(message, status_code):
        return TransientPullError(message)
    return PermanentPullError(message)
