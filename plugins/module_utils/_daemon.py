# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's connection to the Docker daemon (docker-py ``APIClient``).

Importable without the ``docker`` library so that the Ansible module can
report it missing with ``missing_required_lib`` instead of a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import socket
import threading
from collections import namedtuple

from ._runtime import socket_url

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


class DaemonTLS(namedtuple("DaemonTLS", "verify ca_cert client_cert client_key hostname")):
    """TLS to the daemon: verify its certificate against ``ca_cert`` (when
    ``verify``), present ``client_cert``/``client_key``; ``hostname`` to expect."""

    __slots__ = ()


def tls_config(tls):
    """docker-py's ``TLSConfig`` for a ``DaemonTLS``, or None."""
    if tls is None:
        return None
    from docker.tls import TLSConfig

    cert = (tls.client_cert, tls.client_key) if tls.client_cert and tls.client_key else None
    # (docker 7 dropped assert_hostname: the name in the daemon's certificate
    # must match the host in the URL.)
    return TLSConfig(client_cert=cert, ca_cert=tls.ca_cert if tls.verify else None,
                     verify=(tls.ca_cert or True) if tls.verify else False)


def docker_base_url(value):
    """Accept a socket path or a ``unix://``/``tcp://``/``http(s)://`` URL."""
    return socket_url(value, DEFAULT_DOCKER_HOST)


class TrackingClient(APIClient):
    """An ``APIClient`` that lets the engine bound and abort the pull in flight.

    docker-py's ``pull()`` sends its request with no timeout and hides both
    the connection and the response inside the stream generator. The engine
    needs them to close the stream when the deadline passes or nobody waits
    any more, before the daemon's first byte (dockerd answers a pull only once
    the registry has answered) as well as after. The overrides keep them per
    thread (per greenlet under gevent), so concurrent pulls never see each
    other's: ``begin_pull`` names a callback that receives the connection as
    soon as the request is sent on it.
    """

    def __init__(self, *args, **kwargs):
        # With TLS, requests would let REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
        # replace the daemon's CA (psf/requests#3829): the daemon's CA must win,
        # from the very first request (the base class asks for /version).
        self._trust_env = kwargs.get("tls") is None
        self._pull_local = threading.local()  # before the base class asks for /version
        super(TrackingClient, self).__init__(*args, **kwargs)
        self.trust_env = self._trust_env
        for adapter in set(self.adapters.values()):
            for name in ("get_connection_with_tls_context", "get_connection"):
                if hasattr(adapter, name):
                    setattr(adapter, name, self._tracking(getattr(adapter, name)))

    # The engine hands every pull its credentials itself (``_credentials``).
    # docker-py parses config.json's credential sections when the client is
    # made, so a malformed file (a list, an ``auth`` that is not base64) would
    # keep the engine from the daemon altogether: the client gets the file
    # without them. The empty ``auths`` keeps the dict non-empty, which stops
    # docker-py from reading the file again.
    @property
    def _general_configs(self):
        return self._puller_general_configs

    @_general_configs.setter
    def _general_configs(self, value):
        value = dict(value) if isinstance(value, dict) else {}
        for key in ("credsStore", "credHelpers"):
            value.pop(key, None)
        value["auths"] = {}
        self._puller_general_configs = value

    def _retrieve_server_version(self):
        self.trust_env = self._trust_env
        return super(TrackingClient, self)._retrieve_server_version()

    def _tracking(self, get_pool):
        local = self._pull_local

        def tracked_pool(*args, **kwargs):
            pool = get_pool(*args, **kwargs)
            if pool is not None and not getattr(pool, "_puller_tracked", False):
                make_request = pool._make_request

                def tracked_request(conn, *a, **kw):
                    hook = getattr(local, "on_connection", None)
                    if hook is not None:
                        hook(conn)
                    return make_request(conn, *a, **kw)

                pool._make_request = tracked_request
                pool._puller_tracked = True
            return pool

        return tracked_pool

    def begin_pull(self, timeout, on_connection=None):
        """The next pull of this thread: its backstop read timeout, and who hears of its connection."""
        self._pull_local.timeout = timeout
        self._pull_local.response = None
        self._pull_local.on_connection = on_connection

    def end_pull(self):
        """Forget this thread's pull; returns its response for closing."""
        self._pull_local.on_connection = None
        self._pull_local.timeout = None
        return self.take_response()

    def current_response(self):
        """The streaming response of this thread's pull, if it has begun."""
        return getattr(self._pull_local, "response", None)

    def take_response(self):
        response, self._pull_local.response = self.current_response(), None
        return response

    @contextlib.contextmanager
    def call_timeout(self, seconds):
        """Within the block, this thread's plain API calls time out after ``seconds``."""
        previous = getattr(self._pull_local, "call_timeout", None)
        self._pull_local.call_timeout = seconds
        try:
            yield self
        finally:
            self._pull_local.call_timeout = previous

    def _set_request_timeout(self, kwargs):
        limit = getattr(self._pull_local, "call_timeout", None)
        if limit is not None and "timeout" not in kwargs:
            kwargs["timeout"] = limit
        return super(TrackingClient, self)._set_request_timeout(kwargs)

    def _post(self, url, **kwargs):
        limit = getattr(self._pull_local, "timeout", None)
        if limit is not None and kwargs.get("timeout", 0) is None:
            kwargs["timeout"] = limit
        return super(TrackingClient, self)._post(url, **kwargs)

    def _stream_helper(self, response, decode=False):
        self._pull_local.response = response
        return super(TrackingClient, self)._stream_helper(response, decode=decode)


def abort_connection(conn):
    """Shut the socket of an HTTP connection, waking a thread blocked on it."""
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # pylint: disable=broad-except
        pass  # already closed


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
