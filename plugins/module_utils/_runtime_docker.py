# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker API below the runtime seam: dockerd and Podman's compatible API.

A pull is the daemon's ``/images/create`` stream, read by ``_stream``; the
watchdog aborts it by shutting the stream's connection, before the daemon's
first byte (dockerd answers a pull only once the registry has answered) as
well as after.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading

from ._daemon import (APIError, DockerException, RequestTimeout, TrackingClient, abort_connection, abort_response,
                      tls_config)
from ._errors import DaemonUnavailable, PermanentPullError, PullFailed, TransientPullError, pull_error
from ._reference import InvalidReference, parse_reference
from ._redact import redact, secrets_of
from ._runtime import Runtime, local_key, tag_key
from ._stream import KIND_DIGEST, KIND_ERROR, KIND_LAYER, KIND_PROGRESS, read_event

log = logging.getLogger("puller.engine")


class DockerRuntime(Runtime):
    """One shared docker-py client to the daemon at ``docker_host``, made on first use so a late daemon is fine.

    ``backstop`` is the pull stream's read timeout, which only matters if the
    watchdog itself failed.
    """

    kind = "docker"
    label = "the Docker daemon"
    can_mirror = True
    can_tag = True

    def __init__(self, docker_host, api_version="auto", timeout=10.0, tls=None, max_pool_size=64, backstop=None):
        self.docker_host = docker_host
        self._api_version = api_version
        self._timeout = timeout
        self._tls = tls
        self._max_pool_size = max_pool_size
        self._backstop = backstop
        self._lock = threading.Lock()
        self._client = None

    def client(self):
        with self._lock:
            if self._client is None:
                try:
                    self._client = TrackingClient(
                        base_url=self.docker_host, version=self._api_version, timeout=self._timeout,
                        tls=tls_config(self._tls), max_pool_size=self._max_pool_size)
                except DockerException as exc:
                    raise DaemonUnavailable(daemon_error(self.docker_host, exc))
            return self._client

    def check(self, timeout=None):
        try:
            client = self.client()
            with client.call_timeout(timeout):
                client.ping()
        except DaemonUnavailable:
            raise
        except Exception as exc:  # requests' ConnectionError, APIError, socket errors
            raise DaemonUnavailable(daemon_error(self.docker_host, exc))

    def info(self):
        try:
            version = self.client().version()
        except Exception as exc:  # pylint: disable=broad-except
            return {"error": str(exc)}
        names = [c.get("Name", "") for c in version.get("Components") or []]
        engine = "podman" if any("podman" in n.lower() for n in names) else "docker"
        return {"engine": engine, "version": version.get("Version"), "api_version": version.get("ApiVersion")}

    def local_images(self, timeout=None):
        """One listing instead of two inspects per image: inspects queue behind
        the image store's lock while pulls register layers."""
        index = {}
        try:
            client = self.client()
            with client.call_timeout(timeout):
                images = client.images()
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("cannot list local images (statuses will say pulled): %s", exc)
            return index
        for image in images:
            for name in (image.get("RepoTags") or []) + (image.get("RepoDigests") or []):
                try:
                    index[local_key(parse_reference(name))] = image["Id"]
                except InvalidReference:
                    pass  # "<none>:<none>" and the like
        return index

    def local_platform(self, ref):
        try:
            info = self.client().inspect_image(tag_key(ref))
        except Exception:  # pylint: disable=broad-except  # absent, or the daemon is busy: unknown
            return None
        return "/".join(p for p in (info.get("Os"), info.get("Architecture"), info.get("Variant")) if p)

    # -- pulling ------------------------------------------------------------------
    def pull(self, name, tag, auth_config, platform, watch):
        try:
            client = self.client()
        except DaemonUnavailable as exc:
            raise TransientPullError(str(exc))
        # The watchdog bounds the pull; the read timeout is a backstop only.
        client.begin_pull(self._backstop, lambda conn: watch.on_abort(lambda: abort_connection(conn)))
        try:
            digest = self._stream(client, name, tag, auth_config, platform, watch)
        finally:
            abort_response(client.end_pull())
        return digest or _repo_digest(client, name, tag)

    @staticmethod
    def _stream(client, name, tag, auth_config, platform, watch):
        digest, secrets = None, secrets_of(auth_config)
        timeout_msg = "timeout: pull of %s exceeded the deadline" % (name,)
        try:
            events = client.pull(name, tag=tag, stream=True, decode=True, auth_config=dict(auth_config),
                                 platform=platform)
            response = client.current_response()
            watch.on_abort(lambda: abort_response(response))
            for raw in events:
                watch.alive()
                event = read_event(raw)
                if event.kind == KIND_ERROR:
                    raise pull_error(redact(event.detail, secrets))
                if event.kind == KIND_DIGEST:
                    digest = event.detail
                elif event.kind in (KIND_PROGRESS, KIND_LAYER):
                    watch.emit(event.kind, event.detail)
        except PullFailed:
            raise
        except APIError as exc:
            if watch.fired:
                raise watch.error(timeout_msg)
            raise pull_error(redact(exc.explanation or str(exc), secrets), exc.status_code)
        except Exception as exc:  # the stream broke: daemon restart, reset, timeout
            if watch.fired or isinstance(exc, RequestTimeout):
                raise watch.error(timeout_msg)
            raise TransientPullError(redact("error talking to the Docker daemon: %s" % (exc,), secrets))
        if watch.fired:
            raise watch.error(timeout_msg)
        return digest

    # -- mirrors ------------------------------------------------------------------
    def origin_digest(self, ref, auth_config, timeout):
        """One manifest request through the daemon (``/distribution/.../json``), no layers."""
        client = self.client()
        try:
            with client.call_timeout(timeout):
                found = client.inspect_distribution(str(ref), auth_config=dict(auth_config))
        except APIError as exc:
            error = pull_error(redact(exc.explanation or str(exc), secrets_of(auth_config)), exc.status_code)
            if not error.retryable and exc.status_code != 404 or "manifest unknown" in error.message:
                raise PermanentPullError("at the origin: " + error.message)
            raise TransientPullError(error.message)
        return found["Descriptor"]["digest"]

    def adopt(self, ref, pulled_as, digest):
        client = self.client()
        client.tag(pulled_as, ref.name, ref.tag)
        if "@" not in pulled_as:  # a mirror's tag goes; a digest reference stays (see Runtime.adopt)
            client.remove_image(pulled_as, noprune=True)

    def close(self):
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def daemon_error(host, exc):
    text = str(exc)
    if "SSL" in text or "certificate" in text.lower() or "tls" in text.lower():
        return "cannot reach the Docker daemon at %s: TLS failed: %s" % (host, text)
    return "cannot reach the Docker daemon at %s: %s" % (host, text)


def _repo_digest(client, name, tag):
    """The digest from the image's ``RepoDigests``, for daemons whose stream has
    no ``Digest:`` line (Podman)."""
    if ":" in tag:  # a digest (a tag has no colon)
        return tag
    try:
        digests = client.inspect_image("%s:%s" % (name, tag)).get("RepoDigests") or []
    except Exception:  # pylint: disable=broad-except  # the row just has no digest
        return None
    for entry in digests:
        repo, _sep, digest = entry.partition("@")
        if repo == name or repo.endswith("/" + name.split("/", 1)[-1]):
            return digest
    return None
