"""What the store keeps of a job's request, and what a restart makes of the jobs left unfinished.

The store keeps every field that shapes a pull (platform, mirrors, policy,
retries, deadline...) and no credentials: those live only in memory, in the
``PullRequest`` of a running job. A job resumed after a restart therefore
cannot pull again the images that needed credentials: they end failed,
saying so, and the rest are pulled. Mirrors named with ``mirror_auth`` are
tried again without their credentials (a mirror that refuses is skipped, as
when it is down).

A stored job that the server's settings no longer admit (``--allow-registry``,
``--allow-request-mirrors``) ends failed at the start, each image left saying
which setting refuses it; the other jobs resume.
"""

import logging
import re
import time

from puller.core._errors import InvalidRequest, RequestForbidden
from puller.core._godur import rfc3339_now
from puller.core._request import parse_pull_request
from puller.core._shared import STATUS_CANCELLED
from puller.jobs import model

log = logging.getLogger("puller.jobs")

NOT_RESUMABLE = ("interrupted by a restart: credentials are never stored, so this image was not pulled "
                 "again; submit it again")
NEVER_PULLED = "interrupted: puller stopped before this image was pulled"

# What shapes a pull, and nothing secret: a resumed job is parsed again from
# these. An allow-list, so that a field added to requests later is left out
# (its resume incomplete) rather than stored when it is secret: ``auth_config``
# (per image) and ``mirror_auth`` (per mirror host) never are.
STORED_REQUEST_FIELDS = ("concurrency", "retry", "pull", "dry_run", "timeout", "mirrors", "platform", "preheat")
STORED_IMAGE_FIELDS = ("image", "tag", "project", "platform", "digest")


def public_body(body):
    """The request body without credentials: what the store may keep."""
    images = []
    for item in body.get("images") or []:
        if isinstance(item, dict):
            kept = {k: item[k] for k in STORED_IMAGE_FIELDS if k in item}
            if item.get("auth_config"):
                kept["had_credentials"] = True
            images.append(kept)
        else:
            images.append(item)
    kept = {k: body[k] for k in STORED_REQUEST_FIELDS if k in body}
    kept["images"] = images
    return kept


def needs_auth(body, index):
    item = (body.get("images") or [])[index]
    return isinstance(item, dict) and bool(item.get("auth_config") or item.get("had_credentials"))


def unpulled_row(entry, message, status):
    return {"image": entry.image, "tag": entry.tag, "project": entry.project, "cost": "0s",
            "retried": entry.attempts, "errmsg": message, "digest": "", "id": "", "previous_id": "",
            "status": status}


class Resuming:
    """The restart half of ``JobManager``, which it is mixed into: it uses the
    manager's ``store``, ``parse``, runs and ``_status``."""

    def resume(self, enabled=True):
        """Jobs queued or running when the last process stopped: run the rest, or mark them interrupted.

        A stored job that cannot run ends here, failed: it must not stop this
        start, nor, left unfinished, every later one.
        """
        resumed = []
        for job_row, entries in self.store.unfinished():
            try:
                job = self._rehydrate(job_row, entries)
                if not enabled:
                    self._interrupt(job)
                    continue
                try:
                    run = self._resumable(job)
                except InvalidRequest as exc:
                    self._refuse(job, exc)
                    continue
            except Exception:  # pylint: disable=broad-except
                log.exception("job %s cannot be resumed; it ends failed", job_row["id"])
                self.store.update_job(job_row["id"], status=model.FAILED, finished=rfc3339_now(),
                                      finished_ts=time.time(), error="internal error: cannot be resumed")
                continue
            with self._lock:
                self._runs[job.id] = run
            resumed.append(job.id)
            self._start(run)
        return resumed

    def _resumable(self, job):
        """The job's run for what is left of it; its request None when nothing is (the run only reports).
        Raises ``InvalidRequest`` when this server refuses what is left."""
        remaining = [e.index for e in job.entries if not e.ended]
        for index in remaining:  # credentials are never stored: those images cannot be pulled again
            if needs_auth(job.request, index):
                entry = job.entries[index]
                entry.needs_auth = True
                entry.phase, entry.row = model.FAILED, unpulled_row(entry, NOT_RESUMABLE, "failed")
                self.store.finish_entries(job.id, [(index, entry.phase, entry.attempts, entry.row)])
        remaining = [e.index for e in job.entries if not e.ended]
        body = dict(job.request, images=[job.request["images"][i] for i in remaining])
        request = self.parse(body, max_images=max(self.max_images, len(remaining))) if remaining else None
        if request is not None:
            job.map_references((str(spec.ref), remaining[spec.index]) for spec in request.specs)
        job.resumed += 1
        job.status = model.QUEUED
        return self._run_type(job, request, remaining, {e.index: e.row for e in job.entries if e.ended})

    def _interrupt(self, job):
        left = {e.index: (model.CANCELLED, unpulled_row(e, NEVER_PULLED, STATUS_CANCELLED))
                for e in job.entries if not e.ended}
        # With every image ended before the stop, nothing was interrupted: the rows say how it went.
        self._end_unrun(job, model.INTERRUPTED if left else None, left)

    def _refuse(self, job, exc):
        """A stored job this server now refuses: its images left fail, each saying which setting refuses it."""
        left = [e.index for e in job.entries if not e.ended]
        reasons = {index: self._refusal(job.request, index) for index in left}
        first = next(((i, r) for i, r in reasons.items() if r), None)
        # An image refused only with its job (the request's mirrors, say) names the image that is.
        reason = "%s (images[%d] of this job)" % (first[1], first[0]) if first else "not resumed: " + exc.message
        self._end_unrun(job, model.FAILED, {
            index: (model.FAILED, unpulled_row(job.entries[index], reasons[index] or reason, "failed"))
            for index in left})
        log.warning("job %s not resumed, it ends failed: %s", job.id, first[1] if first else reason)

    def _refusal(self, body, index):
        """Why this server refuses image ``index`` of a stored request, naming the setting; None if it does not."""
        alone = dict(body, images=[body["images"][index]])
        try:
            self.parse(alone, max_images=1)
        except RequestForbidden as exc:
            # The field tells the setting: the allow-list refuses ``images[N].image``
            # (the image's registry) or ``mirrors.REGISTRY[N]`` (a mirror the
            # request names); ``mirrors.REGISTRY`` is a request mirror refused as such.
            field = exc.field or ""
            spec = parse_pull_request(alone, allow_request_mirrors=True).specs[0]
            if re.fullmatch(r"images\[\d+\]\.image", field):
                return "not resumed: --allow-registry no longer admits registry %s" % spec.ref.domain
            if re.fullmatch(r"mirrors\..*\[\d+\]", field):
                return "not resumed: --allow-registry no longer admits the request's mirrors: " + exc.message
            if field.startswith("mirrors."):
                return "not resumed: request mirrors need --allow-request-mirrors (%s for %s)" % (
                    ", ".join(m.host for m in spec.mirrors), spec.ref.domain)
            return "not resumed: " + exc.message
        except InvalidRequest as exc:
            return "not resumed: %s: %s" % (exc.field, exc.message) if exc.field else "not resumed: " + exc.message
        return None

    def _end_unrun(self, job, status, left):
        """End a stored job without running it. ``left``: index -> (phase, row) of its images not ended;
        ``status`` None for the one its rows give."""
        for index, (phase, row) in left.items():
            job.entries[index].phase, job.entries[index].row = phase, row
        report = {"success": [e.row for e in job.entries if e.phase == model.SUCCEEDED],
                  "failure": [e.row for e in job.entries if e.phase != model.SUCCEEDED],
                  "startAt": job.started or job.created, "cost": "0s"}
        self.store.finish_entries(job.id, [(i, phase, job.entries[i].attempts, row)
                                           for i, (phase, row) in left.items()])
        self.store.update_job(job.id, status=status or self._status(job, {e.index: e.row for e in job.entries}),
                              finished=rfc3339_now(), finished_ts=time.time(), report=report)
