# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Go ``time.Duration`` strings: the wire format of every ``cost`` field.

Callers of the original service parse ``cost`` with Go's ``time.ParseDuration``,
so we print exactly what Go's ``Duration.String()`` prints.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

_UNITS_NS = {
    "ns": 1,
    "us": 1000,
    "\u00b5s": 1000,  # micro sign
    "\u03bcs": 1000,  # greek mu
    "ms": 1000 ** 2,
    "s": 1000 ** 3,
    "m": 60 * 1000 ** 3,
    "h": 3600 * 1000 ** 3,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def _frac(value, unit_ns):
    """Format value/unit_ns with trailing zeros removed, as Go's fmtFrac does."""
    whole, rest = divmod(value, unit_ns)
    if not rest:
        return str(whole)
    width = len(str(unit_ns)) - 1
    digits = str(rest).rjust(width, "0").rstrip("0")
    return "%d.%s" % (whole, digits)


def format_duration(seconds):
    """Return ``seconds`` (float) as Go prints a ``time.Duration``.

    >>> format_duration(3.539696838)
    '3.539696838s'
    >>> format_duration(62.5)
    '1m2.5s'
    """
    ns = int(round(seconds * 1e9))
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns == 0:
        return "0s"
    if ns < 1000:
        return "%s%dns" % (sign, ns)
    if ns < 1000 ** 2:
        return sign + _frac(ns, 1000) + "\u00b5s"
    if ns < 1000 ** 3:
        return sign + _frac(ns, 1000 ** 2) + "ms"
    hours, ns = divmod(ns, 3600 * 1000 ** 3)
    minutes, ns = divmod(ns, 60 * 1000 ** 3)
    out = _frac(ns, 1000 ** 3) + "s"
    if hours:
        out = "%dh%dm%s" % (hours, minutes, out)
    elif minutes:
        out = "%dm%s" % (minutes, out)
    return sign + out


def parse_duration(text):
    """Parse a Go duration string (``"1m2.5s"``, ``"300ms"``) into seconds.

    A bare number is taken as seconds, which is what a YAML author means by
    ``timeout: 30``. Raises ``ValueError`` naming the offending text.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ValueError("not a duration: %r" % (text,))
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s):
        return float(s)
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise ValueError("invalid duration %r" % (text,))
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or m.group(1) in ("", "."):
            raise ValueError("invalid duration %r" % (text,))
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    return sign * total / 1e9


def rfc3339_now():
    """Local time now, RFC 3339 with fractional seconds and offset (the API's ``startAt``)."""
    return datetime.datetime.now().astimezone().isoformat()
