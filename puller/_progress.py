"""Progress of ``puller pull`` on the terminal (tqdm): a bar per image and a total.

Two feeds reach it: the engine's events (local pulls) and a server job's
event stream (``--server``); both come down to ``image``, ``retry`` and
``done`` calls here. With many images only the total bar is drawn. Nothing
is drawn when stderr is not a terminal (tqdm's own rule), or with ``--json``.
"""

import threading

from tqdm import tqdm

MAX_IMAGE_BARS = 24


class ProgressPrinter:
    def __init__(self, total, enabled=True):
        self._enabled = enabled
        self._total = tqdm(total=total, unit="image", desc="images", disable=None if enabled else True,
                           dynamic_ncols=True, position=0)
        self._per_image = enabled and total <= MAX_IMAGE_BARS and not self._total.disable
        self._bars = {}
        self._lock = threading.Lock()
        self._next_position = 1
        self._layers_of = {}  # reference -> {layer: fraction done}

    def _bar(self, reference):
        found = self._bars.get(reference)
        if found is None and self._per_image:
            found = tqdm(total=100, desc=_short(reference), position=self._next_position, leave=False,
                         dynamic_ncols=True, bar_format="{desc} {bar} {n:3.0f}%{postfix}")
            self._bars[reference] = found
            self._next_position += 1
        return found

    # -- normalized feed ------------------------------------------------------------
    def image(self, reference, percent, phase=""):
        with self._lock:
            image_bar = self._bar(reference)
            if image_bar is not None and percent is not None and percent > image_bar.n:
                image_bar.update(percent - image_bar.n)
                image_bar.set_postfix_str(phase, refresh=False)

    def retry(self, reference, delay, error):
        with self._lock:
            self._total.write("retrying %s in %.1fs: %s" % (reference, delay, error))

    def done(self, reference, status):
        with self._lock:
            image_bar = self._bars.pop(reference, None)
            if image_bar is not None:
                image_bar.close()
            self._total.update(1)

    # -- the engine's events (local pulls) ----------------------------------------------
    def on_event(self, event):
        if event.kind == "done":
            self.done(event.reference, event.detail.status)
        elif event.kind == "retry":
            self.retry(event.reference, event.detail["delay"], event.detail["error"])
        elif event.kind in ("progress", "layer"):
            self._layers(event.reference, event.detail)

    def _layers(self, reference, detail):
        with self._lock:
            layers = self._layers_of.setdefault(reference, {})
            if detail.get("done"):
                layers[detail["layer"]] = 1.0
            elif detail.get("total"):
                layers[detail["layer"]] = max(layers.get(detail["layer"], 0.0),
                                              detail["current"] / float(detail["total"]) *
                                              (1.0 if detail["phase"] == "Extracting" else 0.8))
            else:
                layers.setdefault(detail["layer"], 0.0)
            percent = 100.0 * sum(layers.values()) / len(layers)
        self.image(reference, min(percent, 99.0), detail.get("phase", ""))

    # -- a server job's events (--server) --------------------------------------------
    def on_job_event(self, event):
        kind = event.get("type")
        if kind == "progress":
            self.image(event["image"], event.get("progress"))
        elif kind == "retry":
            self.retry(event["image"], event.get("delay", 0), event.get("error", ""))
        elif kind == "done":
            for _index in event.get("indexes") or [None]:
                self.done(event["image"], event.get("status"))

    def close(self):
        with self._lock:
            for image_bar in self._bars.values():
                image_bar.close()
            self._bars.clear()
            self._total.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(reference, width=40):
    return reference if len(reference) <= width else "..." + reference[-(width - 3):]
