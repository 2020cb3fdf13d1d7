"""Fan-out of a job's events to its subscribers (event streams, the page, the CLI).

A reader slower than its job must still get every event that says what
happened (``status``, ``attempt``, ``retry``, ``done``, the ``report``), and
the server must not hold an unbounded backlog for it. So a subscription
coalesces only ``progress``: a progress event of an image whose previous one
is still unread takes that one's place (the reader gets the latest figures,
in the older one's position). A reader that keeps up loses nothing.

That bounds a subscription's queue by the job itself: at most one waiting
progress event per image, plus one after each other event of that image; the
others are at most, per image, one ``attempt`` and one ``retry`` per attempt
(``retry`` in a request is capped) and one ``done``; per job a few ``status``
events and one ``report``. The events themselves are shared by every
subscriber; a queue holds references. ``close`` ends every subscription of a
job with ``None``, after everything published before it.
"""

import collections
import queue
import threading

COALESCED = ("progress",)


class _Latest:
    """The queue's slot of an image's progress: replaced while it waits unread."""

    __slots__ = ("event",)

    def __init__(self, event):
        self.event = event


class Subscription:
    """One reader's events of one job, in order; ``get`` raises ``queue.Empty`` on a timeout."""

    def __init__(self):
        self._cond = threading.Condition()
        self._items = collections.deque()
        self._waiting = {}  # image -> its _Latest still in _items
        self.coalesced = 0  # progress events replaced before they were read

    def offer(self, event):
        with self._cond:
            image = event.get("image") if event is not None else None
            if event is not None and event.get("type") in COALESCED:
                slot = self._waiting.get(image)
                if slot is not None:
                    slot.event = event
                    self.coalesced += 1
                    return
                slot = self._waiting[image] = _Latest(event)
                self._items.append(slot)
            else:
                # Any other event of the image comes after its waiting
                # progress; a later progress must not jump ahead of it.
                self._waiting.pop(image, None)
                self._items.append(event)
            self._cond.notify()

    def get(self, timeout=None):
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout):
                raise queue.Empty
            item = self._items.popleft()
            if isinstance(item, _Latest):
                image = item.event.get("image")
                if self._waiting.get(image) is item:
                    del self._waiting[image]
                return item.event
            return item

    def __len__(self):
        with self._cond:
            return len(self._items)


class Broker:
    def __init__(self):
        self._lock = threading.Lock()
        self._subscribers = {}  # job id -> [Subscription]

    def subscribe(self, job_id):
        subscription = Subscription()
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(subscription)
        return subscription

    def unsubscribe(self, job_id, subscription):
        with self._lock:
            subs = self._subscribers.get(job_id, [])
            if subscription in subs:
                subs.remove(subscription)
            if not subs:
                self._subscribers.pop(job_id, None)

    def publish(self, job_id, event):
        event.setdefault("job", job_id)
        with self._lock:
            subs = list(self._subscribers.get(job_id, ()))
        for subscription in subs:
            subscription.offer(event)

    def close(self, job_id):
        with self._lock:
            subs = self._subscribers.pop(job_id, [])
        for subscription in subs:
            subscription.offer(None)
