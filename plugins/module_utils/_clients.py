# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two ways the prefetch module reaches a daemon; both speak the ``/pull`` body.

``EngineClient`` drives the engine in-process (direct mode, threads);
``ApiClient`` posts to a running ``puller serve`` (API mode). Both return the
API's report dict or raise the engine's typed errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.module_utils.urls import fetch_url

from ._engine import Engine, EngineConfig, run_in_threads
from ._errors import DaemonUnavailable, InvalidRequest, PullerError
from ._request import parse_pull_request


class ApiError(PullerError):
    """The puller server refused or failed the request."""


class EngineClient:
    def __init__(self, docker_host, deadline, max_daemon_pulls):
        self.engine = Engine(EngineConfig(docker_host=docker_host, deadline=deadline,
                                          max_daemon_pulls=max_daemon_pulls))

    def pull(self, body):
        return self.engine.pull(parse_pull_request(body), runner=run_in_threads).as_dict()


class ApiClient:
    def __init__(self, module, api_url, token, timeout):
        self.module = module
        self.url = api_url.rstrip("/") + "/pull"
        self.token = token
        self.timeout = timeout

    def pull(self, body):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        resp, info = fetch_url(self.module, self.url, data=json.dumps(body), headers=headers, method="POST",
                               timeout=self.timeout)
        status = info.get("status", -1)
        raw = resp.read() if resp is not None else info.get("body", b"")
        try:
            payload = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        except (ValueError, AttributeError):
            payload = None
        if status in (200, 500) and isinstance(payload, dict) and "success" in payload:
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        if status == 400:
            raise InvalidRequest(message or "rejected", payload.get("field") if isinstance(payload, dict) else None)
        if status == 503:
            raise DaemonUnavailable(message or "the server cannot reach its Docker daemon")
        if status == 401:
            raise ApiError("%s refused the API token (401)" % self.url)
        raise ApiError("%s answered %s: %s" % (self.url, status, message or info.get("msg", "")))
