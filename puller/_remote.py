"""``puller pull --server URL`` and ``puller jobs``: the CLI as a client of a server.

The pull becomes a job on the server; the terminal draws it from the job's
event stream. Ctrl-C detaches (the job goes on, its id is printed) unless
``--cancel-on-interrupt`` asks to cancel it.
"""

import json

import requests

from puller.core._errors import DaemonUnavailable, InvalidRequest, PullerError

CONNECT_TIMEOUT = 10.0


class ServerError(PullerError):
    """The server refused a request or could not be reached."""


class ServerClient:
    def __init__(self, url, token=None, timeout=30.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = "Bearer " + token
        self.timeout = timeout

    def _call(self, method, path, **kwargs):
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, self.timeout))
        try:
            resp = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError as exc:
            raise DaemonUnavailable("cannot reach the puller server at %s: %s" % (self.url, _reason(exc)))
        except requests.RequestException as exc:
            raise ServerError("%s %s%s: %s" % (method, self.url, path, exc))
        if resp.status_code < 400:
            return resp
        try:
            payload = resp.json()
        except ValueError:
            payload = {}
        message = payload.get("error") or resp.reason
        if resp.status_code == 400:
            raise InvalidRequest(message, payload.get("field"))
        if resp.status_code == 401:
            raise InvalidRequest("the server refused the token (401); give it with --token-file or PULLER_TOKEN",
                                 "token")
        if resp.status_code == 503:
            raise DaemonUnavailable("%s: %s" % (self.url, message))
        raise ServerError("%s %s%s answered %d: %s" % (method, self.url, path, resp.status_code, message))

    def create_job(self, body):
        return self._call("POST", "/jobs", json=body).json()

    def job(self, job_id):
        return self._call("GET", "/jobs/" + job_id).json()

    def jobs(self, status=None, limit=50):
        params = {"limit": limit}
        if status:
            params["status"] = status
        return self._call("GET", "/jobs", params=params).json()["jobs"]

    def cancel(self, job_id):
        return self._call("DELETE", "/jobs/" + job_id).json()

    def events(self, job_id):
        """The job's events, one dict each, until its report."""
        resp = self._call("GET", "/jobs/%s/events" % job_id, stream=True, timeout=(CONNECT_TIMEOUT, None))
        with resp:
            for line in resp.iter_lines():
                if line:
                    yield json.loads(line)


def _reason(exc):
    text = str(exc)
    return "connection refused" if "refused" in text.lower() else text


def print_jobs(jobs, as_json):
    if as_json:
        print(json.dumps(jobs, indent=2))
        return
    print("%-32s  %-11s  %5s  %-22s  %s" % ("ID", "STATUS", "DONE", "IMAGES", "CREATED"))
    for job in jobs:
        counts = "%d/%d ok" % (job["succeeded"], job["desired"]) + (", %d failed" % job["failed"] if job["failed"]
                                                                    else "")
        print("%-32s  %-11s  %4.0f%%  %-22s  %s" % (job["id"], job["status"], job["progress"], counts,
                                                    job["created"][:19]))


def print_job(job, as_json):
    if as_json:
        print(json.dumps(job, indent=2))
        return
    print_jobs([job], False)
    for image in job.get("images") or []:
        row = image.get("row") or {}
        print("  %-10s %-50s attempts=%d %s"
              % (image["phase"], image["image"], image["attempts"], row.get("errmsg", "")))
