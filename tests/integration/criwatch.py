"""The engine's side of the runtime seam for the CRI runtime's tests: a watch
with the seam's contract and a watchdog of its own, a proxy that tells
containerd's manifest requests from puller's, and an empty image store."""

import subprocess
import threading
import time

from faultproxy import FaultProxy
from puller.core._errors import DeadlineExceeded, TransientPullError
from puller.core._reference import parse_reference


class Watch:
    """The attempt's side of the seam, with a watchdog like the engine's: it
    fires on the deadline, or after ``stall`` seconds without ``alive()``."""

    def __init__(self, deadline=60.0, stall=None, memo=None):
        self.memo = {} if memo is None else memo
        self.alive_at, self.events, self.fired, self.reason = [], [], False, None
        self._abort, self._lock = [], threading.Lock()
        self._start = self._last = time.monotonic()
        self._deadline, self._stall = deadline, stall
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def alive(self):
        self._last = time.monotonic()
        self.alive_at.append(self._last)

    def emit(self, kind, detail):
        self.events.append((time.monotonic(), kind, dict(detail)))

    def on_abort(self, fn):
        with self._lock:
            self._abort.append(fn)
            fired = self.fired
        if fired:
            fn()

    def fire(self, reason):
        with self._lock:
            if self.fired:
                return
            self.fired, self.reason, self.fired_at = True, reason, time.monotonic()
            fns = list(self._abort)
        for fn in fns:
            fn()

    def error(self, message):
        if self.reason == "stalled":
            return TransientPullError("stalled: the runtime showed nothing for %gs" % self._stall)
        return DeadlineExceeded(message)

    def _watch(self):
        while not self._stopped.wait(0.05):
            now = time.monotonic()
            if now - self._start >= self._deadline:
                self.fire("deadline")
            elif self._stall and now - self._last >= self._stall:
                self.fire("stalled")

    def stop(self):
        self._stopped.set()

    def of(self, kind, phase=None):
        return [d for _t, k, d in self.events if k == kind and (phase is None or d["phase"] == phase)]


class AgentProxy(FaultProxy):
    """The fault proxy, recording each manifest request's User-Agent, and
    answering puller's own (not containerd's) with 503 when ``refuse_puller``."""

    def __init__(self, upstream_port, rate=None):
        super().__init__(upstream_port)
        self.agents, self.refuse_puller, self.rate = [], False, rate

    def _handle(self, h):
        agent = h.headers.get("User-Agent", "")
        if "/manifests/" in h.path:
            with self.lock:
                self.agents.append((agent, h.command))
            if self.refuse_puller and agent.startswith("puller"):
                h.send_response(503)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        super()._handle(h)

    def _forward(self, h, body, hang=0.0):
        if self.rate and "/blobs/" in h.path:
            from test_cri_client import _Throttled  # pylint: disable=import-outside-toplevel  # pytest's, not the benchmark's
            h.wfile = _Throttled(h.wfile, self.rate)  # as the slow proxy does
        return super()._forward(h, body, hang)

    def puller_gets(self):
        return [c for a, c in self.agents if a.startswith("puller")]


def empty_store(client, env):
    """No image, and no blob either: containerd collects the blobs of a removed
    image a while later, and a pull finding them downloads nothing."""
    for image in client.list_images():
        client.remove(image["id"])
    ctr = [env["PULLER_TEST_CTR"], "--address", env["PULLER_TEST_CRI_SOCKET"], "-n", env["PULLER_TEST_CRI_NAMESPACE"]]
    blobs = subprocess.run(ctr + ["content", "ls", "-q"], check=True, capture_output=True, text=True).stdout.split()
    if blobs:
        subprocess.run(ctr + ["content", "rm"] + blobs, check=True, capture_output=True)


def pull(rt, image, watch, auth=None):
    ref = parse_reference(image if ":" in image.split("/")[-1] or "@" in image else image + ":latest")
    try:
        return rt.pull(ref.name, ref.pull_tag, auth or {}, None, watch)
    finally:
        watch.stop()
