# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read one decoded event of a daemon's pull stream.

Two dialects reach us. The classic image store (dockerd up to 24, and by
default later) reports per layer: ``Pulling fs layer``, ``Waiting``,
``Downloading`` and ``Extracting`` with ``progressDetail: {current, total}``
in bytes, ``Pull complete`` or ``Already exists``, then ``Digest: sha256:...``.
The containerd image store (Docker 25+) has no ``Pulling fs layer`` lines and
reports extraction as ``{"current": 3, "units": "s"}`` (seconds, no total);
Podman sends errors as ``errorDetail`` on the first event and no digest line.
Every event counts as a sign of life; only byte counts with a total feed the
progress figures.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

KIND_ERROR = "error"
KIND_DIGEST = "digest"
KIND_PROGRESS = "progress"  # bytes of one layer: current out of total
KIND_LAYER = "layer"  # a layer's phase changed, no byte counts
KIND_STATUS = "status"  # anything else: a sign of life

LAYER_DONE_PHASES = ("Pull complete", "Already exists", "Download complete")


class StreamEvent(namedtuple("StreamEvent", "kind detail")):
    """``detail``: the message (error), the digest, or ``{layer, phase, current, total, done}``."""

    __slots__ = ()


def read_event(event):
    """Classify one decoded JSON object of the stream."""
    if not isinstance(event, dict):
        return StreamEvent(KIND_STATUS, None)
    if event.get("error") or event.get("errorDetail"):
        detail = event.get("errorDetail") or {}
        message = (detail.get("message") if isinstance(detail, dict) else None) or event.get("error")
        return StreamEvent(KIND_ERROR, str(message or "unknown error"))
    status = event.get("status") or ""
    if not isinstance(status, str):
        status = str(status)
    if status.startswith("Digest: "):
        return StreamEvent(KIND_DIGEST, status[len("Digest: "):].strip())
    layer = event.get("id")
    if not layer or not isinstance(layer, str) or status.startswith("Pulling from "):
        return StreamEvent(KIND_STATUS, status)
    progress = event.get("progressDetail") or {}
    if not isinstance(progress, dict):
        progress = {}
    total, current = progress.get("total"), progress.get("current")
    in_bytes = progress.get("units") in (None, "", "B", "bytes")
    if in_bytes and _number(total) and total > 0 and _number(current):
        return StreamEvent(KIND_PROGRESS, {"layer": layer, "phase": status, "current": min(current, total),
                                           "total": total, "done": False})
    return StreamEvent(KIND_LAYER, {"layer": layer, "phase": status, "current": None, "total": None,
                                    "done": status in LAYER_DONE_PHASES})


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
