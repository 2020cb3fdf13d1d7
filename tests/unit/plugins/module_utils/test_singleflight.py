import threading
import time

import pytest

from puller.core._singleflight import SingleFlight


def test_concurrent_callers_share_one_call():
    flights, calls, results = SingleFlight(), [], []
    started = threading.Event()

    def work():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return "done"

    threads = [threading.Thread(target=lambda: results.append(flights.do("k", work))) for _i in range(5)]
    threads[0].start()
    started.wait()
    for t in threads[1:]:
        t.start()
    snap = flights.snapshot()
    for t in threads:
        t.join()
    assert calls == [1] and results == ["done"] * 5
    assert snap[0][0] == "k" and snap[0][1]["waiters"] >= 2
    assert flights.snapshot() == []


def _raise(exc):
    raise exc


def test_errors_reach_every_waiter_and_the_key_is_freed():
    flights = SingleFlight()
    with pytest.raises(RuntimeError):
        flights.do("k", lambda: _raise(RuntimeError("boom")))
    assert flights.do("k", lambda: 2) == 2
