# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's connection to the Docker daemon (docker-py ``APIClient``).

Importable without the ``docker`` library so that the Ansible module can
report it missing with ``missing_required_lib`` instead of a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import socket
import threading

try:
    from docker import APIClient
    from docker.errors import APIError, DockerException  # pylint: disable=unused-import
    from requests.exceptions import Timeout as RequestTimeout  # pylint: disable=unused-import
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised on hosts without docker
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = exc
    APIClient = object

    class DockerException(Exception):
        pass

    class APIError(DockerException):
        pass

    class RequestTimeout(Exception):
        pass

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_base_url(value):
    """Accept a socket path or a ``unix://``/``tcp://``/``http(s)://`` URL."""
    if not value:
        return DEFAULT_DOCKER_HOST
    if value.startswith("/"):
        return "unix://" + value
    return value


class TrackingClient(APIClient):
    """An ``APIClient`` that lets the engine bound and abort the pull in flight.

    docker-py's ``pull()`` sends its request with no timeout and hides the
    response inside the stream generator. The engine needs both: a timeout
    equal to the image's remaining deadline while waiting for the daemon's
    first byte, and the response itself to close the stream when the deadline
    passes or the attempt ends. The overrides keep both per thread (per
    greenlet under gevent), so concurrent pulls never see each other's.
    """

    def __init__(self, *args, **kwargs):
        super(TrackingClient, self).__init__(*args, **kwargs)
        self._pull_local = threading.local()

    def set_request_timeout(self, seconds):
        self._pull_local.timeout = seconds
        self._pull_local.response = None

    def current_response(self):
        """The streaming response of this thread's pull, if it has begun."""
        return getattr(self._pull_local, "response", None)

    def take_response(self):
        response, self._pull_local.response = self.current_response(), None
        return response

    def _post(self, url, **kwargs):
        limit = getattr(self._pull_local, "timeout", None)
        if limit is not None and kwargs.get("timeout", 0) is None:
            kwargs["timeout"] = limit
        return super(TrackingClient, self)._post(url, **kwargs)

    def _stream_helper(self, response, decode=False):
        self._pull_local.response = response
        return super(TrackingClient, self)._stream_helper(response, decode=decode)


def abort_response(response):
    """Close a streaming response now, waking any thread blocked reading it."""
    if response is None:
        return
    try:
        raw = response.raw._fp.fp.raw
        sock = getattr(raw, "_sock", raw)
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # pylint: disable=broad-except
        pass  # already closed, or not a plain socket: close() below still runs
    try:
        response.close()
    except Exception:  # pylint: disable=broad-except
        pass
