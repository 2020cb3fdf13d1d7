"""Progress of ``puller pull`` on the terminal, drawn by tqdm from engine events."""

import threading

from tqdm import tqdm


class ProgressPrinter:
    """One bar: images finished out of the total, with bytes downloaded so far."""

    def __init__(self, total, enabled=True):
        self._bar = tqdm(total=total, unit="image", disable=None if enabled else True, dynamic_ncols=True)
        self._lock = threading.Lock()
        self._layers = {}

    def on_event(self, event):
        with self._lock:
            if event.kind == "progress" and event.detail["phase"] == "Downloading":
                self._layers[(event.reference, event.detail["layer"])] = event.detail["current"]
                self._bar.set_postfix_str("%.1f MiB" % (sum(self._layers.values()) / 2 ** 20), refresh=False)
            elif event.kind == "retry":
                detail = event.detail
                self._bar.write("retrying %s in %.1fs: %s" % (event.reference, detail["delay"], detail["error"]))
            elif event.kind == "done":
                self._bar.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._bar.close()
