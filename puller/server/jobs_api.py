"""The job routes: ``/jobs``, ``/jobs/{id}``, ``/jobs/{id}/events``, and streaming ``/pull``.

Thin: validation is the engine's (``Api.parse``), bookkeeping the
job manager's; here are only status codes and the two stream formats,
NDJSON (one JSON object a line) and Server-Sent Events.
"""

import json
import queue

import bottle

from puller.core._errors import InvalidRequest, RequestForbidden
from puller.core._preheat import PREHEAT_FIELD
from puller.jobs.manager import JobEnded, NoSuchJob, TooManyJobs
from puller.jobs.model import JOB_STATUSES
from puller.jobs.store import StoreUnavailable
from puller.server.answers import error_answer, json_answer

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
HEARTBEAT = 15.0  # seconds between keep-alive lines when nothing happens
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000
STORE_RETRY_AFTER = "30"  # a full disk under the state dir takes someone's action to clear


def store_unavailable(exc):
    """A job the store could not take (``StoreUnavailable``): 503, naming the state dir and the reason."""
    return error_answer(503, str(exc), "state_dir", {"Retry-After": STORE_RETRY_AFTER})


def wants(media_type):
    return media_type in bottle.request.environ.get("HTTP_ACCEPT", "")


class JobRoutes:
    def __init__(self, api):
        self.api = api
        self.jobs = api.jobs

    def install(self, app, authorized):
        app.route("/jobs", "POST", authorized(self.create))
        app.route("/jobs", "GET", authorized(self.list))
        app.route("/jobs/<job_id>", "GET", authorized(self.show))
        app.route("/jobs/<job_id>", "DELETE", authorized(self.cancel))
        app.route("/jobs/<job_id>/events", "GET", authorized(self.events))

    # -- routes -------------------------------------------------------------------
    def create(self):
        body = self.api.read_json()
        try:
            request = self.api.parse(body)
        except InvalidRequest as exc:
            return error_answer(403 if isinstance(exc, RequestForbidden) else 400, exc.message, exc.field)
        try:
            job = self.jobs.submit(request, body, kind=PREHEAT_FIELD if PREHEAT_FIELD in body else "job")
        except TooManyJobs as exc:
            return error_answer(429, str(exc), "jobs", {"Retry-After": "10"})
        except StoreUnavailable as exc:
            return store_unavailable(exc)
        accepted = {"id": job.id, "status": "queued", "kind": job.kind, "created": job.created,
                    "desired": len(job.entries)}
        return json_answer(202, accepted, {"Location": "/jobs/%s" % job.id})

    def list(self):
        status = bottle.request.query.get("status") or None
        if status is not None and status not in JOB_STATUSES:
            return error_answer(400, "must be one of %s" % ", ".join(JOB_STATUSES), "status")
        raw = bottle.request.query.get("limit") or str(DEFAULT_LIST_LIMIT)
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
            return error_answer(400, "must be a whole number from 1 to %d" % MAX_LIST_LIMIT, "limit")
        return json_answer(200, {"jobs": self.jobs.list(status, int(raw))})

    def show(self, job_id):
        try:
            return json_answer(200, self.jobs.get(job_id))
        except NoSuchJob as exc:
            return error_answer(404, str(exc), "id")

    def cancel(self, job_id):
        try:
            run = self.jobs.cancel(job_id)
        except NoSuchJob as exc:
            return error_answer(404, str(exc), "id")
        except JobEnded as exc:
            return error_answer(409, str(exc), "id")
        run.done.wait(10)
        return json_answer(200, self.jobs.get(job_id))

    def events(self, job_id):
        try:
            state, subscription = self.jobs.subscribe(job_id)
        except NoSuchJob as exc:
            return error_answer(404, str(exc), "id")
        return self.stream(job_id, state, subscription)

    # -- streams --------------------------------------------------------------------
    def stream(self, job_id, state, subscription, with_state=True):
        """The response for a job's events: the state first, then live events, last the report."""
        sse = wants(SSE)
        bottle.response.content_type = SSE if sse else NDJSON
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream

        def lines():
            try:
                if with_state:
                    yield _format({"type": "state", "job": state}, sse)
                if subscription is None:  # ended before we came: its report is all there is
                    yield _format(_report_event(state), sse)
                    return
                while not self.api.draining:
                    try:
                        event = subscription.get(timeout=HEARTBEAT)
                    except queue.Empty:
                        yield b": heartbeat\n\n" if sse else _format({"type": "heartbeat"}, False)
                        continue
                    if event is None:
                        return
                    yield _format(event, sse)
            finally:
                if subscription is not None:
                    self.jobs.unsubscribe(job_id, subscription)

        return lines()


def _report_event(state):
    event = {"type": "report", "job": state["id"], "ok": state["status"] == "succeeded", "status": state["status"]}
    event.update(state.get("report") or {"error": state.get("error") or "the job ended without a report"})
    return event


def _format(event, sse):
    data = json.dumps(event, separators=(",", ":"))
    if sse:
        return ("event: %s\ndata: %s\n\n" % (event.get("type", "message"), data)).encode("utf-8")
    return (data + "\n").encode("utf-8")
