"""Fan-out of a job's events to its subscribers (event streams, the page, the CLI).

Each subscriber has a bounded queue; one that does not read loses events,
never the job. ``close`` ends every subscription of a job with ``None``.
"""

import queue
import threading

QUEUE_SIZE = 10000


class Broker:
    def __init__(self):
        self._lock = threading.Lock()
        self._subscribers = {}  # job id -> [queue]

    def subscribe(self, job_id):
        q = queue.Queue(maxsize=QUEUE_SIZE)
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(q)
        return q

    def unsubscribe(self, job_id, q):
        with self._lock:
            subs = self._subscribers.get(job_id, [])
            if q in subs:
                subs.remove(q)

    def publish(self, job_id, event):
        event.setdefault("job", job_id)
        with self._lock:
            subs = list(self._subscribers.get(job_id, ()))
        for q in subs:
            _offer(q, event)

    def close(self, job_id):
        with self._lock:
            subs = self._subscribers.pop(job_id, [])
        for q in subs:
            _offer(q, None)


def _offer(q, item):
    try:
        q.put_nowait(item)
    except queue.Full:
        pass
