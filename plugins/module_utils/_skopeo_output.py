# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What ``skopeo copy`` says while it copies, read line by line (``_skopeo`` runs it).

Two streams, read as they come:

- stdout, on a pseudo-terminal: skopeo draws one progress bar per blob,
  ``Copying blob 7a6696b5d0fb [====>---] 3.8MiB / 8.0MiB``, redrawn every
  150 ms *whether or not a byte moved*, so a redrawn bar is a sign of life only
  when its figures changed. Without a terminal skopeo prints
  ``Copying blob sha256:<hex>`` once per blob and nothing in between, the same
  line for a blob it copies as for one the site already has, and no sizes.
- stderr, with ``--debug``: one line per step, and the only exact account of
  what went to the site: ``Upload of layer sha256:<hex> complete`` for each
  blob sent (configs too), ``Skipping blob sha256:<hex> (already present):``
  for each one the site had (or mounted from another repository). A config
  the site has is fetched from the origin and then not sent, with no line of
  its own. The failure is the ``level=fatal`` line.

Events, in the shapes of the Docker stream's (``_stream``), so that a job's
figures rise as ``puller.jobs.model`` counts them: ``layer`` ``Waiting`` when
a blob is announced, ``progress`` ``Copying`` (current of total, from the
bars), ``layer`` ``Copy complete`` or ``Already exists`` (``done``). Layers
are named by 12 hex digits, as Docker names them.

Errors: the fatal message, stripped of query strings (upload state tokens),
redacted, bounded, and typed by ``_errors.pull_error`` plus what skopeo's own
wording needs (TLS set-up and policy refusals are permanent).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import deque

from ._errors import PermanentPullError, TransientPullError, is_retryable
from ._redact import redact

KIND_PROGRESS, KIND_LAYER = "progress", "layer"
MAX_MESSAGE = 400  # characters of an error message, at most
MAX_LINE = 64 << 10  # a longer line is cut: nothing skopeo says is that long

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A bar's name is cut to line them up: 12 hex digits of a blob, 10 of a config.
_ANNOUNCE = re.compile(r"^Copying (blob|config) (?:sha256:)?([0-9a-f]{10,64})(?:\s+(.*))?$")
_COUNTERS = re.compile(r"([0-9.]+)\s*(b|B|KiB|MiB|GiB|TiB)\s*/\s*([0-9.]+)\s*(b|B|KiB|MiB|GiB|TiB)\s*$")
_UNITS = {"b": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_LOG = re.compile(r'\blevel=(\w+)\s+msg=("(?:[^"\\]|\\.)*"|\S+)')
_UPLOADED = re.compile(r"^Upload of layer (sha256:[0-9a-f]{64}) complete")
_SKIPPED = re.compile(r"^Skipping blob (sha256:[0-9a-f]{64}) \(already present\)")
_QUERY = re.compile(r"(https?://[^\s\"?]+)\?[^\s\"]*")

# Retrying cannot mend these: a certificate the host does not trust, a
# registry that speaks plain HTTP where HTTPS is required, a trust policy's "no".
_PERMANENT = re.compile(r"x509: |server gave HTTP response to HTTPS client|Source image rejected|"
                        r"rejected by policy|invalid reference format|no policy\.json", re.I)
# skopeo's ways of saying 5xx, which ``pull_error`` does not all read as such.
_TRANSIENT = re.compile(r"status code from registry 5\d\d|HTTP status:? 5\d\d", re.I)


def short_id(digest):
    """The 12 hex digits Docker's stream names a layer by."""
    return digest.partition(":")[2][:12] or digest[:12]


def parse_size(number, unit):
    """``("8.0", "MiB")`` -> 8388608 (skopeo prints one decimal: the figure is within 0.05 of a unit)."""
    return int(float(number) * _UNITS[unit])


def unquote(text):
    """A logrus value as written (Go-quoted when it has spaces) -> the text."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1])
    return text


def log_record(line):
    """``(level, message)`` of a logrus line of skopeo's stderr, or None."""
    found = _LOG.search(line)
    if found is None:
        return None
    return found.group(1), unquote(found.group(2))


def clean_message(text, secrets=()):
    """``text`` fit to show: no query strings (upload state), redacted, at most ``MAX_MESSAGE`` characters."""
    text = redact(_QUERY.sub(r"\1?...", " ".join((text or "").split())), secrets)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def classify(message, names=()):
    """The typed error for skopeo's ``message``; ``names`` (the images' references) are left out of the
    decision, so that a repository called ``denied`` or ``not-found`` does not make a network error final."""
    text = message
    for name in names:
        if name:
            text = text.replace(name, "IMAGE")
    if _TRANSIENT.search(text):
        return TransientPullError(message)
    if _PERMANENT.search(text):
        return PermanentPullError(message)
    return TransientPullError(message) if is_retryable(text) else PermanentPullError(message)


class CopyOutput:
    """The state of one copy, fed with its lines; its events wait in ``take()``.

    Events are for layers only, as the Docker stream's and the CRI runtime's
    are: a config is copied too (and counted by the runtime), but has no bar
    of its own in a job.
    """

    def __init__(self):
        self.layers = {}  # short id -> None while it copies, then the phase it ended with
        self.uploaded = set()  # full digests sent to the site (layers and configs)
        self.skipped = set()  # full digests of layers the site had
        self.fatal = None
        self._pending = {}  # short id -> phase: an end heard on stderr before stdout named the blob
        self._shown = {}  # short id -> (current, total) last sent
        self._events = []
        self._others = deque(maxlen=3)  # the last warnings and errors, for a failure without a fatal line

    # -- stdout -------------------------------------------------------------------------
    def stdout_line(self, line):
        """One line of stdout (a terminal's or a pipe's); True when it says something new."""
        line = _ANSI.sub("", line).strip()
        found = _ANNOUNCE.match(line)
        if found is None or found.group(1) != "blob":
            # "Writing manifest to image destination" and the like come with
            # debug lines of their own; a config has a bar, but is no layer.
            return False
        layer, rest = found.group(2)[:12], found.group(3) or ""
        new = self._announce(layer)
        counters = _COUNTERS.search(rest)
        if counters is None or self.layers[layer] is not None:
            return new
        total = parse_size(counters.group(3), counters.group(4))
        current = min(parse_size(counters.group(1), counters.group(2)), total)
        if not total or (current, total) == self._shown.get(layer):
            return new  # the same figures redrawn: no sign of life
        self._shown[layer] = (current, total)
        self._events.append((KIND_PROGRESS, dict(_detail(layer, "Copying"), current=current, total=total)))
        return True

    def _announce(self, layer):
        if layer in self.layers:
            return False
        self.layers[layer] = None
        self._events.append((KIND_LAYER, _detail(layer, "Waiting")))
        if layer in self._pending:
            self._complete(layer, self._pending.pop(layer))
        return True

    # -- stderr -------------------------------------------------------------------------
    def stderr_line(self, line):
        """One line of stderr (``--debug``): every one is a step of the copy."""
        record = log_record(line)
        if record is None:
            if line.strip():
                self._others.append(line.strip())
            return
        level, message = record
        if level == "debug":
            self._debug(message)
        elif level in ("fatal", "panic"):
            self.fatal = message
        elif level in ("error", "warning"):
            self._others.append(message)

    def _debug(self, message):
        found = _UPLOADED.match(message)
        if found:
            self.uploaded.add(found.group(1))
            self._complete(short_id(found.group(1)), "Copy complete")
            return
        found = _SKIPPED.match(message)
        if found:  # only layers are skipped this way
            self.skipped.add(found.group(1))
            self._announce(short_id(found.group(1)))
            self._complete(short_id(found.group(1)), "Already exists")

    def _complete(self, layer, phase):
        if layer not in self.layers:
            self._pending[layer] = phase  # a layer not named yet, or a config (which never is)
            return
        if self.layers[layer] is not None:
            return  # a layer two images of an index share: the second found it there
        self.layers[layer] = phase
        shown = self._shown.get(layer)
        if shown and phase == "Copy complete" and shown[0] < shown[1]:  # the bar's last figure came too late
            self._events.append((KIND_PROGRESS, dict(_detail(layer, "Copying"), current=shown[1], total=shown[1])))
        self._events.append((KIND_LAYER, dict(_detail(layer, phase), done=True)))

    # -- the end ------------------------------------------------------------------------
    def take(self):
        events, self._events = self._events, []
        return events

    def finish(self):
        """The copy succeeded: every layer is at the site now, whatever was said of it."""
        for layer, phase in list(self.layers.items()):
            if phase is None:
                self._complete(layer, "Done")
        return self.take()

    def failure(self, returncode, secrets=(), names=()):
        """The typed error of a copy that exited with ``returncode``."""
        if self.fatal:
            text = self.fatal
        elif self._others:
            text = "; ".join(self._others)
        elif returncode < 0:
            text = "skopeo was killed by signal %d" % -returncode
        else:
            text = "skopeo exited with status %d" % returncode
        return classify(clean_message(text, secrets), names)


def _detail(layer, phase):
    return {"layer": layer, "phase": phase, "current": None, "total": None, "done": False}


class LineBuffer:
    """Bytes as they arrive -> complete lines (``\\r`` of a terminal dropped); a line is cut at ``MAX_LINE``."""

    def __init__(self):
        self._data = b""

    def feed(self, chunk):
        data = self._data + chunk
        lines = data.split(b"\n")
        self._data = lines.pop()[-MAX_LINE:]
        return [line[:MAX_LINE].replace(b"\r", b"").decode("utf-8", "replace") for line in lines]

    def rest(self):
        data, self._data = self._data, b""
        return [data.replace(b"\r", b"").decode("utf-8", "replace")] if data else []
