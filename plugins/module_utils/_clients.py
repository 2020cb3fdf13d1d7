# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two ways the prefetch module reaches a runtime; both speak the ``/pull`` body.

``EngineClient`` drives the engine in-process (direct mode, threads);
``ApiClient`` posts to a running ``puller serve`` (API mode). Both return the
API's report dict or raise the engine's typed errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ._engine import DEFAULT_DAEMON_TIMEOUT, Engine, EngineConfig, run_in_threads
from ._errors import DaemonUnavailable, InvalidRequest, PullerError
from ._mirrors import normalize_host
from ._preheat import Preheaters, parse_preheat_request
from ._request import parse_pull_request
from ._runtime_cri import CriRuntime


class ApiError(PullerError):
    """The puller server refused or failed the request."""


class EngineClient:
    """Direct mode; ``mirrors`` (parsed) and ``mirror_auth`` are the playbook's, so trusted.

    ``runtime_endpoint``, when given, is a CRI runtime (a Kubernetes node's
    containerd) to pull through instead of the Docker daemon at ``docker_host``.
    """

    def __init__(self, docker_host, deadline, max_daemon_pulls, mirrors=None, mirror_auth=None, credentials=None,
                 tls=None, api_version="auto", daemon_timeout=None, runtime_endpoint=None):
        config = EngineConfig(docker_host=docker_host, deadline=deadline, max_daemon_pulls=max_daemon_pulls, tls=tls,
                              api_version=api_version, **({"daemon_timeout": daemon_timeout} if daemon_timeout else {}))
        runtime = CriRuntime(runtime_endpoint, timeout=daemon_timeout or DEFAULT_DAEMON_TIMEOUT) \
            if runtime_endpoint else None
        self.engine = Engine(config, credentials=credentials, runtime=runtime)
        if mirrors and not self.engine.runtime.can_mirror:
            raise InvalidRequest("the CRI runtime pulls through the node's own mirrors: write them into its "
                                 "hosts.toml with the role bbklab.puller.cri_mirrors instead", "mirrors")
        self.mirrors = mirrors or {}
        self.mirror_auth = dict(mirror_auth or {})

    def pull(self, body):
        request = parse_pull_request(body, mirrors=self.mirrors, mirror_auth=self.mirror_auth,
                                     runtime=self.engine.runtime)
        return self.engine.pull(request, runner=run_in_threads).as_dict()


class PreheatClient:
    """Direct mode of a preheat: this host runs skopeo, copying from the origin to ``site``.

    ``site_auth`` maps hosts to their ``auth_config`` (the module's
    ``mirror_auth``: the site is where hosts pull from, as from a mirror).
    """

    def __init__(self, site, deadline, max_copies, site_auth=None, insecure_registries=(), credentials=None):
        self.site = site
        site_auth = dict((normalize_host(host, "mirror_auth"), auth) for host, auth in (site_auth or {}).items())
        self.preheaters = Preheaters(EngineConfig(deadline=deadline, max_daemon_pulls=max_copies),
                                     site_auth=site_auth, insecure_registries=insecure_registries,
                                     credentials=credentials)

    def pull(self, body):
        site, request = parse_preheat_request(body)
        try:
            return self.preheaters.engine(site).pull(request, runner=run_in_threads).as_dict()
        finally:
            self.preheaters.close()


class ApiClient:
    """API mode: the request becomes a job on the server, polled until it ends.

    A job survives what a single long ``POST /pull`` does not: a proxy's or
    load balancer's idle timeout, a dropped connection.
    """

    POLL_INTERVAL = 1.0
    REQUEST_TIMEOUT = 30

    def __init__(self, module, api_url, token, wait_timeout, clock=time.monotonic, sleep=time.sleep, mirrors=None,
                 mirror_auth=None):
        self.module = module
        self.mirrors = mirrors
        self.mirror_auth = mirror_auth
        self.base = api_url.rstrip("/")
        self.token = token
        self.wait_timeout = wait_timeout
        self._clock = clock
        self._sleep = sleep

    def _call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        url = self.base + path
        # open_url, not fetch_url: fetch_url reads the module's validate_certs,
        # which (as in community.docker) is about the Docker daemon.
        status, raw, reason = -1, b"", ""
        try:
            resp = open_url(url, data=json.dumps(body) if body is not None else None, headers=headers,
                            method=method, timeout=self.REQUEST_TIMEOUT,
                            validate_certs=self.module.params.get("api_validate_certs", True))
            status, raw = resp.getcode(), resp.read()
        except HTTPError as exc:
            status, raw, reason = exc.code, exc.read(), str(exc.reason)
        except (URLError, OSError) as exc:
            raise ApiError("cannot reach %s: %s" % (url, getattr(exc, "reason", None) or exc))
        try:
            payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (ValueError, AttributeError):
            payload = None
        if 200 <= status < 300 and isinstance(payload, dict):
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        if status == 400:
            raise InvalidRequest(message or "rejected", payload.get("field") if isinstance(payload, dict) else None)
        if status == 503:
            raise DaemonUnavailable(message or "the server cannot reach its Docker daemon")
        if status == 401:
            raise ApiError("%s refused the API token (401)" % url)
        raise ApiError("%s answered %s: %s" % (url, status, message or reason))

    def pull(self, body):
        body = dict(body)
        if self.mirrors is not None:
            body["mirrors"] = self.mirrors
        if self.mirror_auth:
            body["mirror_auth"] = self.mirror_auth
        job = self._call("POST", "/jobs", body)
        end = self._clock() + self.wait_timeout
        interval = self.POLL_INTERVAL / 4
        while True:
            state = self._call("GET", "/jobs/" + job["id"])
            if state["status"] not in ("queued", "running"):
                break
            if self._clock() >= end:
                raise ApiError("job %s on %s is still %s after %ss (%d of %d images done); it goes on on the "
                               "server" % (job["id"], self.base, state["status"], self.wait_timeout,
                                           state["succeeded"] + state["failed"], state["desired"]))
            self._sleep(interval)
            interval = min(self.POLL_INTERVAL, interval * 2)
        if state.get("report") is None:
            raise DaemonUnavailable(state.get("error") or "job %s ended without a report" % job["id"])
        return state["report"]
