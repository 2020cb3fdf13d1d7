"""Shared pulls: one attempt at a time per key, each participant on its own budget."""

import threading
import time

from puller.core._errors import PermanentPullError, TransientPullError
from puller.core._shared import Participant, SharedPulls


class Script:
    """A stand-in for the daemon: each attempt takes ``seconds`` and then does
    what the next entry of ``steps`` says ("ok", "transient", "permanent")."""

    def __init__(self, steps, seconds=0.3):
        self.steps = list(steps)
        self.seconds = seconds
        self.calls = 0
        self.abandoned = 0

    def __call__(self, flight):
        self.calls += 1
        step = self.steps.pop(0) if self.steps else "ok"
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            if not flight.active():
                self.abandoned += 1
                raise TransientPullError("stream closed: nobody waits")
            time.sleep(0.01)
        if step == "transient":
            raise TransientPullError("503 service unavailable")
        if step == "permanent":
            raise PermanentPullError("manifest unknown")
        return "sha256:" + "a" * 64


def _participant(deadline, attempts, cancel=None, events=None):
    emit = None if events is None else (lambda kind, n, detail: events.append((kind, n)))
    return Participant(deadline, attempts, "timeout after %ss" % deadline, emit=emit, cancel=cancel)


def _in_thread(shared, key, participant, delay=0.0):
    out = {}

    def run():
        time.sleep(delay)
        t0 = time.monotonic()
        out["outcome"] = shared.pull(key, participant)
        out["seconds"] = time.monotonic() - t0

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_concurrent_participants_share_one_attempt():
    script = Script(["ok"])
    shared = SharedPulls(script, lambda n: 0.01)
    runs = [_in_thread(shared, "k", _participant(5, 3), delay=0.05 * i) for i in range(5)]
    for thread, _out in runs:
        thread.join()
    assert script.calls == 1
    assert {out["outcome"].status for _t, out in runs} == {"pulled"}
    assert shared.snapshot() == []


def test_a_joiner_stops_at_its_own_deadline_and_the_pull_goes_on():
    script = Script(["ok"], seconds=1.5)
    shared = SharedPulls(script, lambda n: 0.01)
    long_run = _in_thread(shared, "k", _participant(10, 3))
    short_run = _in_thread(shared, "k", _participant(0.4, 3), delay=0.2)
    short_run[0].join()
    long_run[0].join()
    short, long_ = short_run[1], long_run[1]
    assert short["outcome"].status == "failed" and short["outcome"].error == "timeout after 0.4s"
    assert short["seconds"] < 0.8, short
    assert long_["outcome"].status == "pulled" and script.calls == 1 and script.abandoned == 0


def test_a_joiner_with_a_larger_budget_gets_further_attempts():
    # The first participant allows one attempt; it fails transiently. The
    # joiner allows three: the same flight retries for it alone.
    script = Script(["transient", "ok"], seconds=0.4)
    shared = SharedPulls(script, lambda n: 0.05)
    events = []
    first = _in_thread(shared, "k", _participant(10, 1))
    joiner = _in_thread(shared, "k", _participant(10, 3, events=events), delay=0.1)
    first[0].join()
    joiner[0].join()
    assert first[1]["outcome"].status == "failed" and first[1]["outcome"].attempts == 1
    assert joiner[1]["outcome"].status == "pulled" and joiner[1]["outcome"].attempts == 2
    assert script.calls == 2
    assert [kind for kind, _n in events] == ["attempt", "retry", "attempt"]


def test_a_short_deadline_does_not_cut_the_pull_for_a_longer_one():
    # A waits 0.5 s, B (joining at once) 5 s; the attempt takes 1 s.
    script = Script(["ok"], seconds=1.0)
    shared = SharedPulls(script, lambda n: 0.01)
    a = _in_thread(shared, "k", _participant(0.5, 1))
    b = _in_thread(shared, "k", _participant(5, 3), delay=0.05)
    a[0].join()
    b[0].join()
    assert a[1]["outcome"].error == "timeout after 0.5s"
    assert b[1]["outcome"].status == "pulled" and b[1]["outcome"].attempts == 1 and script.calls == 1


def test_permanent_errors_reach_everyone_once():
    script = Script(["permanent"])
    shared = SharedPulls(script, lambda n: 0.01)
    runs = [_in_thread(shared, "k", _participant(5, 3), delay=0.05 * i) for i in range(3)]
    for thread, _out in runs:
        thread.join()
    assert script.calls == 1
    assert {(out["outcome"].status, out["outcome"].error) for _t, out in runs} == {("failed", "manifest unknown")}


def test_when_everyone_leaves_the_attempt_is_abandoned():
    script = Script(["ok"], seconds=5)
    shared = SharedPulls(script, lambda n: 0.01)
    cancel = threading.Event()
    thread, out = _in_thread(shared, "k", _participant(10, 3, cancel=cancel))
    time.sleep(0.2)
    cancel.set()
    thread.join(2)
    assert out["outcome"].status == "cancelled" and out["seconds"] < 1
    time.sleep(0.2)
    assert script.abandoned == 1 and shared.snapshot() == []


def test_a_key_is_free_again_after_its_flight():
    script = Script(["permanent", "ok"], seconds=0.05)
    shared = SharedPulls(script, lambda n: 0.01)
    assert shared.pull("k", _participant(5, 3)).status == "failed"
    assert shared.pull("k", _participant(5, 3)).status == "pulled"
    assert script.calls == 2
