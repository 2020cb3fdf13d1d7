# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signs of life and byte progress of CRI pulls, from containerd's downloads.

``PullImage`` says nothing until it returns. While it runs, containerd's
content store lists its downloads in progress (``ListStatuses``): one entry
per blob, ``layer-sha256:<hex>`` and the like, whose offset moves in ~1 MiB
steps, and which drops out once the blob is complete. Several pulls run at
once, so one ``IngestPoller`` per runtime asks once per interval for every
active pull, and each pull's ``PullTracker`` keeps what belongs to it: the
blobs of its manifest (index, manifest, config, layers), known once the
registry has said (``know``).

Signs of life (``watch.alive()``), called from the poller's thread:

- one of the pull's downloads appeared, moved or completed;
- none of its downloads is left after some were seen: containerd works
  locally (unpacking), which the content store does not show, and which may
  take longer than a stall timeout for big layers. A download that hangs is
  always seen: containerd opens the blob's entry before it asks the registry.

Until the manifest is known (or when the registry would not give it), a
pull's downloads are those that no pull with a known manifest claims: two
such pulls at once keep each other alive, and show no byte progress.

Progress (``emit``), queued here and sent from the pull's own thread, in the
shapes of the Docker stream's events, mapped so that a job's figures rise to
100 as ``puller.jobs.model`` counts them (download is the first 80 % of a
layer, extraction the rest):

- ``layer`` ``Waiting`` for each layer once the manifest is known;
- ``progress`` ``Downloading`` (offset of total) when a layer's offset moves;
- ``progress`` ``Download complete`` (total of total) when its entry drops
  out: the layer's bytes are all there, and its share stops at 80 %
  (a ``done`` layer event would count it as unpacked already);
- ``progress`` ``Extracting`` (0 of total) for every layer once nothing of the
  image downloads any more: layers that were never seen (present already,
  or too small to be caught between two polls) reach 80 % too;
- ``layer`` ``Pull complete`` (``done``) for every layer when ``PullImage``
  returns (``finish``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ._errors import PullerError

KIND_PROGRESS, KIND_LAYER = "progress", "layer"


def ingest_digest(ref):
    """``layer-sha256:ab..`` (or ``layer-<name>@sha256:ab..``) -> ``sha256:ab..``."""
    _kind, _sep, rest = ref.partition("-")
    return rest.rpartition("@")[2]


def short_id(digest):
    """The 12 hex digits Docker's stream names a layer by."""
    return digest.partition(":")[2][:12] or digest[:12]


def _progress(layer_id, phase, current, total):
    return KIND_PROGRESS, {"layer": layer_id, "phase": phase, "current": current, "total": total, "done": False}


def _layer(layer_id, phase, done=False):
    return KIND_LAYER, {"layer": layer_id, "phase": phase, "current": None, "total": None, "done": done}


class PullTracker:
    """One pull's view of the downloads; its events wait in ``take()``."""

    def __init__(self, watch):
        self.watch = watch
        self.cond = threading.Condition()
        self._events = []
        self._ended = False  # PullImage returned: nothing more is queued
        self._digests = None  # every blob of the image, once the manifest is known
        self._layers = None  # layer digest -> size, in the manifest's order
        self._last = {}  # digest -> offset of this pull's downloads at the last poll
        self._shown = {}  # layer digest -> offset last sent as progress
        self._seen_any = False
        self._idle_polls = 0  # polls in a row with nothing of this pull downloading
        self._extracting = False

    # -- from the manifest fetch's thread ------------------------------------------
    def know(self, manifest):
        """The image's manifest (an ``ImageManifest``), or None when it could not be had."""
        if manifest is None:
            return
        with self.cond:
            if self._ended or self._digests is not None:
                return
            self._layers = dict((layer.digest, layer.size) for layer in manifest.layers)
            self._digests = frozenset(manifest.digests())
            self._last = dict((d, o) for d, o in self._last.items() if d in self._digests)
            for digest in self._layers:
                self._queue(_layer(short_id(digest), "Waiting"))

    def claimed(self):
        """The blobs this pull is known to download (empty until the manifest is known)."""
        return self._digests or frozenset()

    # -- from the poller's thread ----------------------------------------------------
    def observe(self, ingests, claimed_by_others):
        """One poll's ``(ref, offset, total)`` downloads."""
        with self.cond:
            if self._ended:
                return
            digests = self._digests
            mine = {}
            totals = {}
            for ref, offset, total in ingests:
                digest = ingest_digest(ref)
                if digest in digests if digests is not None else digest not in claimed_by_others:
                    mine[digest], totals[digest] = offset, total
            changed, self._last = mine != self._last, mine
            self._seen_any = self._seen_any or bool(mine)
            self._idle_polls = 0 if mine else self._idle_polls + 1
            if changed or (self._seen_any and not mine):
                self.watch.alive()
            if self._layers is not None:
                self._layer_progress(mine, totals)

    def _layer_progress(self, mine, totals):
        layers = self._layers
        for digest, offset in mine.items():
            if digest in layers and self._shown.get(digest) != offset:
                self._shown[digest] = offset
                self._queue(_progress(short_id(digest), "Downloading", offset, totals[digest] or layers[digest]))
        completed = 0
        for digest, offset in list(self._shown.items()):
            size = layers[digest]
            if offset is not None and digest not in mine:
                # Gone: complete. (A cancelled download goes too, but the
                # pull has ended by then, and nothing more is queued.)
                self._shown[digest] = None
                self._queue(_progress(short_id(digest), "Download complete", size, size))
            if self._shown[digest] is None:
                completed += 1
        # Unpacking: every layer complete, or nothing downloading for two polls
        # after a layer completed (not a pause between two downloads).
        if not self._extracting and not mine and completed and (completed == len(layers) or self._idle_polls >= 2):
            self._extracting = True
            for digest, size in layers.items():
                self._queue(_progress(short_id(digest), "Extracting", 0, size))

    # -- from the pull's thread --------------------------------------------------------
    def _queue(self, event):
        self._events.append(event)
        self.cond.notify_all()

    def end(self):
        """``PullImage`` returned (gRPC's callback): nothing more is queued, ``take`` returns at once."""
        with self.cond:
            self._ended = True
            self.cond.notify_all()

    def take(self, timeout):
        """``(events queued so far, whether the pull ended)``, waiting at most ``timeout`` for either."""
        with self.cond:
            if not self._events and not self._ended:
                self.cond.wait(timeout)
            events, self._events = self._events, []
            return events, self._ended

    def finish(self, pulled):
        """The events left, and with ``pulled`` the ``Pull complete`` of every layer."""
        with self.cond:
            self._ended = True
            events, self._events = self._events, []
            if pulled and self._layers is not None:
                # A download that ended after the last poll completes here.
                events += [_progress(short_id(digest), "Download complete", self._layers[digest],
                                     self._layers[digest])
                           for digest, offset in self._shown.items() if offset is not None]
                events += [_layer(short_id(digest), "Pull complete", done=True) for digest in self._layers]
        return events


class IngestPoller:
    """One thread per runtime asking containerd for its downloads, for every active pull.

    It runs while there are pulls to serve, and exits when the last one is
    removed. ``client`` is a function returning the ``CriClient``.
    """

    def __init__(self, client, interval, timeout):
        self._client = client
        self._interval = float(interval)
        self._timeout = float(timeout)
        self._lock = threading.Lock()
        self._trackers = []
        self._thread = None
        self._stop = threading.Event()
        self.polls = 0

    def add(self, tracker):
        with self._lock:
            self._trackers.append(tracker)
            self._stop.clear()  # a thread about to leave stays for this pull
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cri-ingests")
                self._thread.daemon = True
                self._thread.start()

    def remove(self, tracker):
        with self._lock:
            if tracker in self._trackers:
                self._trackers.remove(tracker)
            if not self._trackers:
                self._stop.set()  # the thread leaves at once instead of after its sleep

    def _run(self):
        while True:
            with self._lock:
                trackers = list(self._trackers)
                if not trackers:
                    self._thread = None
                    return
            try:
                # Bounded: a runtime that stops answering shows as no sign of
                # life, and the pulls' watchdogs decide.
                ingests = self._client().ingests(timeout=self._timeout)
            except PullerError:
                ingests = None
            self.polls += 1
            if ingests is not None:
                claimed = frozenset().union(*[t.claimed() for t in trackers])
                for tracker in trackers:
                    tracker.observe(ingests, claimed)
            self._stop.wait(self._interval)

    def stop(self):
        with self._lock:
            self._trackers = []
            self._stop.set()
