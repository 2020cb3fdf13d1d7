"""A subscription behind its job: progress coalesced per image, nothing else lost, the queue bounded."""

import queue

import pytest

from puller.jobs.events import Broker


def progress(image, pct):
    return {"type": "progress", "image": image, "indexes": [0], "progress": pct, "job_progress": pct}


def drain(subscription):
    out = []
    while True:
        try:
            out.append(subscription.get(timeout=0))
        except queue.Empty:
            return out


def test_a_reader_that_keeps_up_gets_every_progress_event():
    broker = Broker()
    sub = broker.subscribe("j")
    got = []
    for pct in range(10):
        broker.publish("j", progress("a", pct))
        got.append(sub.get(timeout=0)["progress"])
    assert got == list(range(10)) and sub.coalesced == 0


def test_behind_only_the_latest_progress_of_each_image_waits():
    broker = Broker()
    sub = broker.subscribe("j")
    for pct in range(1000):
        broker.publish("j", progress("a", pct))
        broker.publish("j", progress("b", pct))
    assert len(sub) == 2
    assert [(e["image"], e["progress"]) for e in drain(sub)] == [("a", 999), ("b", 999)]
    assert sub.coalesced == 1998


def test_done_status_attempt_retry_and_report_are_never_dropped_nor_reordered():
    broker = Broker()
    sub = broker.subscribe("j")
    broker.publish("j", {"type": "status", "status": "running"})
    for n in range(5000):
        image = "img-%d" % n
        broker.publish("j", {"type": "attempt", "image": image, "attempt": 1})
        for pct in (10, 50, 90):
            broker.publish("j", progress(image, pct))
        broker.publish("j", {"type": "done", "image": image, "phase": "succeeded"})
    broker.publish("j", {"type": "report", "ok": True})
    broker.close("j")
    events = drain(sub)
    assert events[-1] is None and events[-2]["type"] == "report" and events[0]["type"] == "status"
    kinds = [e["type"] for e in events[1:-2]]
    assert kinds == ["attempt", "progress", "done"] * 5000
    assert all(e["progress"] == 90 for e in events if e and e["type"] == "progress")


def test_a_progress_after_another_event_of_its_image_never_jumps_ahead_of_it():
    broker = Broker()
    sub = broker.subscribe("j")
    broker.publish("j", progress("a", 10))
    broker.publish("j", {"type": "retry", "image": "a", "attempt": 1})
    broker.publish("j", progress("a", 20))
    broker.publish("j", progress("a", 30))
    assert [(e["type"], e.get("progress")) for e in drain(sub)] == [
        ("progress", 10), ("retry", None), ("progress", 30)]


@pytest.mark.parametrize("images", [1, 50, 1000])
def test_the_queue_is_bounded_by_the_job_not_by_its_progress(images):
    """Per image: one waiting progress, plus one after each other event of it."""
    broker = Broker()
    sub = broker.subscribe("j")
    others = 0
    for round_ in range(20):
        for n in range(images):
            broker.publish("j", progress("img-%d" % n, round_))
        if round_ == 10:
            for n in range(images):
                broker.publish("j", {"type": "retry", "image": "img-%d" % n, "attempt": 1})
                others += 1
    assert len(sub) <= images + 2 * others


def test_subscribers_coalesce_independently_and_share_the_events():
    broker = Broker()
    slow, fast = broker.subscribe("j"), broker.subscribe("j")
    first, second = progress("a", 1), progress("a", 2)
    broker.publish("j", first)
    assert fast.get(timeout=0) is first
    broker.publish("j", second)
    assert fast.get(timeout=0) is second
    assert drain(slow) == [second] and first["progress"] == 1  # the event itself is never changed


def test_unsubscribed_gets_nothing_more_and_close_ends_the_rest():
    broker = Broker()
    gone, kept = broker.subscribe("j"), broker.subscribe("j")
    broker.unsubscribe("j", gone)
    broker.publish("j", {"type": "status", "status": "running"})
    broker.close("j")
    assert drain(gone) == []
    assert [e and e["type"] for e in drain(kept)] == ["status", None]
    with pytest.raises(queue.Empty):  # a subscription after the close waits (the route sends the state)
        broker.subscribe("j").get(timeout=0)
