# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client of a node's CRI image service (containerd on Kubernetes nodes).

It speaks gRPC on the runtime's unix socket: ``runtime.v1.ImageService``
(``PullImage``, ``ImageStatus``, ``ListImages``, ``RemoveImage``) and
``runtime.v1.RuntimeService/Version``; and, on the same socket, two
services of containerd itself, which the CRI does not offer:

- ``containerd.services.content.v1.Content/ListStatuses``: the downloads in
  progress (in the ``k8s.io`` namespace, the CRI plugin's), for byte progress
  while ``PullImage`` runs; it moves in ~1 MiB steps, a finished blob drops
  out, and unpacking shows as an empty list before ``PullImage`` returns;
- ``containerd.services.introspection.v1.Introspection/Plugins``: the
  platform the CRI plugin pulls for (see ``node_platform``).

Importable without grpcio and protobuf (``HAS_GRPC``, ``GRPC_IMPORT_ERROR``)
so that a module can name the missing library. Errors are the engine's typed
ones (``_errors``); their messages never carry the credentials of a pull.
Under gevent, the caller runs ``grpc.experimental.gevent.init_gevent()``
before the first client is made; this module never imports gevent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import platform as _platform
import sys

from ._cri_proto import MESSAGES, PROTOBUF_IMPORT_ERROR
from ._errors import (DaemonUnavailable, DeadlineExceeded, InvalidRequest, PermanentPullError, TransientPullError,
                      pull_error)
from ._redact import redact, secrets_of
from ._reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, InvalidReference, resolve
from ._runtime import socket_url

try:
    import grpc
    GRPC_IMPORT_ERROR = PROTOBUF_IMPORT_ERROR
except ImportError as exc:  # pragma: no cover - exercised on hosts without grpcio
    grpc = None
    GRPC_IMPORT_ERROR = exc
HAS_GRPC = GRPC_IMPORT_ERROR is None

DEFAULT_CRI_ENDPOINT = "unix:///run/containerd/containerd.sock"
CONTAINERD_NAMESPACE = "k8s.io"  # where containerd's CRI plugin keeps its images and downloads
# containerd resolves docker.io to this host, and checks credentials against it.
DOCKER_HUB_HOST = "registry-1.docker.io"

_CHANNEL_OPTIONS = [
    # A node with many images answers ListImages with more than gRPC's 4 MiB default.
    ("grpc.max_receive_message_length", 64 << 20),
    # After the runtime restarts, calls fail until the channel reconnects: at
    # most a second later, not after gRPC's default backoff of up to 2 minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_http_proxy", 0),
]

# Python's platform.machine() (uname -m) -> Go's GOARCH[/variant], for runtimes
# that do not say which platform they pull for.
_GOARCH = {
    "x86_64": "amd64", "amd64": "amd64", "i386": "386", "i486": "386", "i586": "386", "i686": "386",
    "aarch64": "arm64", "arm64": "arm64", "armv8l": "arm/v8", "armv7l": "arm/v7", "armv6l": "arm/v6",
    "armv5tel": "arm/v5", "ppc64le": "ppc64le", "ppc64": "ppc64", "s390x": "s390x", "riscv64": "riscv64",
    "mips64": "mips64", "loongarch64": "loong64",
}


class PullCancelled(TransientPullError):
    """The pull was cancelled by its caller; the runtime stopped downloading."""


def cri_endpoint(value):
    """Accept a socket path or a ``unix://`` URL; return gRPC's target."""
    return socket_url(value, DEFAULT_CRI_ENDPOINT)


def cri_reference(image):
    """The fully qualified reference the CRI expects (``docker.io/library/busybox:latest``).

    An image ID (``sha256:<hex>``) is kept as it is: ``ImageStatus`` and
    ``RemoveImage`` take one. Raises ``InvalidRequest`` naming ``image``.
    """
    if isinstance(image, str) and image.startswith("sha256:"):
        return image
    try:
        return str(resolve(image))
    except InvalidReference as exc:
        raise InvalidRequest(str(exc), "image")


def auth_message(ref, auth_config):
    """The CRI ``AuthConfig`` for a docker-style ``auth_config`` (username,
    password, auth, identitytoken, registrytoken, serveraddress), or None.

    containerd sends the credentials to every host the pull goes to (mirrors
    too) unless ``server_address`` names one; it then compares that URL's
    host with each registry host. So the address is the image's registry by
    default, and always carries a scheme (without one, Go's URL parser finds
    no host and containerd sends no credentials at all).
    """
    if not auth_config:
        return None
    user, password = auth_config.get("username") or "", auth_config.get("password") or ""
    encoded = auth_config.get("auth") or ""
    if encoded and not user:
        # Decoded here: containerd quotes an undecodable value in its error.
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            sep = ""
        if not sep:
            raise InvalidRequest("must be the base64 of user:password", "auth")
    address = auth_config.get("serveraddress") or ref.split("/", 1)[0]
    scheme, _sep, rest = address.rpartition("://")
    host = rest.split("/", 1)[0]
    if host in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN):
        host = DOCKER_HUB_HOST
    return MESSAGES["runtime.v1.AuthConfig"](
        username=user, password=password, server_address="%s://%s" % (scheme or "https", host),
        identity_token=auth_config.get("identitytoken") or "", registry_token=auth_config.get("registrytoken") or "")


def _image_dict(image):
    return {"id": image.id, "repo_tags": list(image.repo_tags), "repo_digests": list(image.repo_digests),
            "size": int(image.size)}


class PullHandle:
    """A ``PullImage`` in flight: ``result()`` waits, ``cancel()`` aborts it."""

    def __init__(self, future, client, ref, secrets, timeout):
        self._future = future
        self._client = client
        self.ref = ref
        self._secrets = secrets
        self._timeout = timeout
        self._cancelled = False

    def result(self, timeout=None):
        """The runtime's image reference (an ID, ``sha256:...``) once pulled.

        Raises ``PullCancelled`` after ``cancel()``, ``DeadlineExceeded`` when
        the pull's own timeout ran out, ``DaemonUnavailable``, or the
        ``PullFailed`` the runtime's error calls for. ``timeout`` only bounds
        this wait (``grpc.FutureTimeoutError`` when it runs out; the pull goes on).
        """
        try:
            return self._future.result(timeout).image_ref
        except grpc.FutureCancelledError:
            raise PullCancelled("cancelled: the pull of %s was aborted" % self.ref)
        except grpc.RpcError as exc:
            if self._cancelled or exc.code() == grpc.StatusCode.CANCELLED:
                raise PullCancelled("cancelled: the pull of %s was aborted" % self.ref)
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded("timeout: the runtime did not pull %s within %gs" % (self.ref, self._timeout))
            raise self._client.error(exc, "pull " + self.ref, self._secrets)

    def done(self):
        return self._future.done()

    def add_done_callback(self, fn):
        """Call ``fn()`` (from gRPC's thread) once the pull has ended, however it ended."""
        self._future.add_done_callback(lambda _future: fn())

    def cancel(self):
        """Abort the pull: gRPC cancels the call, and containerd its downloads."""
        self._cancelled = True
        return self._future.cancel()


class CriClient:
    """The CRI image service at ``endpoint``; ``timeout`` bounds every call but pulls."""

    def __init__(self, endpoint=None, timeout=60.0):
        if not HAS_GRPC:
            raise DaemonUnavailable("the CRI client needs the Python libraries grpcio and protobuf: %s"
                                    % GRPC_IMPORT_ERROR)
        self.endpoint = cri_endpoint(endpoint)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.endpoint, options=_CHANNEL_OPTIONS)
        self._calls = {}

    # -- plumbing -----------------------------------------------------------------
    def _call(self, method, request_name, response_name):
        call = self._calls.get(method)
        if call is None:
            call = self._calls[method] = self._channel.unary_unary(
                method, request_serializer=MESSAGES[request_name].SerializeToString,
                response_deserializer=MESSAGES[response_name].FromString)
        return call

    def _unary(self, method, request, response_name, what, metadata=None, timeout=None):
        call = self._call(method, type(request).DESCRIPTOR.full_name, response_name)
        try:
            return call(request, timeout=self.timeout if timeout is None else timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise self.error(exc, what)

    def error(self, exc, what, secrets=()):
        """The typed error for a failed call (``what`` names it in the message)."""
        code = exc.code()
        detail = redact(exc.details() or "", secrets)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return DaemonUnavailable("CRI runtime at %s did not answer (%s): %s" % (self.endpoint, code.name, detail))
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return DaemonUnavailable("CRI runtime at %s does not serve %s (%s): %s"
                                     % (self.endpoint, what, code.name, detail))
        message = "%s: %s: %s" % (what, code.name, detail)
        if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
                    grpc.StatusCode.UNAUTHENTICATED):
            return PermanentPullError(message)
        # UNKNOWN carries the registry's answer as text ("401 Unauthorized",
        # "connection refused"): the engine's one rule decides.
        return pull_error(message)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the CRI ------------------------------------------------------------------
    def version(self, timeout=None):
        """``{"version", "runtime_name", "runtime_version", "runtime_api_version"}``.

        ``timeout``, here and below, bounds this call instead of the client's."""
        answer = self._unary("/runtime.v1.RuntimeService/Version", MESSAGES["runtime.v1.VersionRequest"](version="v1"),
                             "runtime.v1.VersionResponse", "version", timeout=timeout)
        return {"version": answer.version, "runtime_name": answer.runtime_name,
                "runtime_version": answer.runtime_version, "runtime_api_version": answer.runtime_api_version}

    def list_images(self, timeout=None):
        """Every image of the runtime: dicts of id, repo_tags, repo_digests, size."""
        answer = self._unary("/runtime.v1.ImageService/ListImages", MESSAGES["runtime.v1.ListImagesRequest"](),
                             "runtime.v1.ListImagesResponse", "list images", timeout=timeout)
        return [_image_dict(image) for image in answer.images]

    def image_status(self, image, timeout=None):
        """The image's dict (as ``list_images``), or None when it is not there."""
        ref = cri_reference(image)
        request = MESSAGES["runtime.v1.ImageStatusRequest"](image=MESSAGES["runtime.v1.ImageSpec"](image=ref))
        answer = self._unary("/runtime.v1.ImageService/ImageStatus", request, "runtime.v1.ImageStatusResponse",
                             "image status " + ref, timeout=timeout)
        # An absent image is an empty answer, not an error.
        return _image_dict(answer.image) if answer.HasField("image") and answer.image.id else None

    def pull(self, image, auth=None, timeout=None):
        """Start pulling ``image`` (for the node's platform); returns a ``PullHandle``.

        ``auth`` is a docker-style auth_config (see ``auth_message``);
        ``timeout`` (seconds, None for none) makes the runtime abort the pull
        when it runs out.
        """
        ref = cri_reference(image)
        request = MESSAGES["runtime.v1.PullImageRequest"](image=MESSAGES["runtime.v1.ImageSpec"](image=ref))
        credentials = auth_message(ref, auth)
        if credentials is not None:
            request.auth.CopyFrom(credentials)
        call = self._call("/runtime.v1.ImageService/PullImage", "runtime.v1.PullImageRequest",
                          "runtime.v1.PullImageResponse")
        return PullHandle(call.future(request, timeout=timeout), self, ref, secrets_of(auth), timeout)

    def remove(self, image):
        """Remove the image (all its tags); removing an absent one is no error."""
        ref = cri_reference(image)
        request = MESSAGES["runtime.v1.RemoveImageRequest"](image=MESSAGES["runtime.v1.ImageSpec"](image=ref))
        self._unary("/runtime.v1.ImageService/RemoveImage", request, "runtime.v1.RemoveImageResponse",
                    "remove image " + ref)

    # -- containerd's own services on the same socket -----------------------------
    def ingests(self, timeout=None):
        """The downloads in progress: ``(ref, offset, total)`` tuples, where
        ``ref`` is containerd's (``layer-sha256:<hex>``, ``manifest-sha256:...``)."""
        answer = self._unary("/containerd.services.content.v1.Content/ListStatuses",
                             MESSAGES["containerd.services.content.v1.ListStatusesRequest"](),
                             "containerd.services.content.v1.ListStatusesResponse", "content statuses",
                             metadata=(("containerd-namespace", CONTAINERD_NAMESPACE),), timeout=timeout)
        return [(s.ref, int(s.offset), int(s.total)) for s in answer.statuses]

    def node_platform(self):
        """The platform the runtime pulls for, ``os/arch[/variant]``, e.g. ``linux/amd64``.

        The CRI does not say (``Version`` and ``Status`` carry no platform):
        containerd's CRI plugin pulls for the platform it reports in its
        introspection (Go's GOOS/GOARCH of its binary, and the CPU variant on
        ARM). Another runtime, or a containerd that does not answer that, is
        on this node too: then the host's own, ``platform.machine()`` mapped
        to GOARCH.
        """
        request = MESSAGES["containerd.services.introspection.v1.PluginsRequest"]()
        try:
            answer = self._unary("/containerd.services.introspection.v1.Introspection/Plugins", request,
                                 "containerd.services.introspection.v1.PluginsResponse", "introspection")
        except (DaemonUnavailable, PermanentPullError, TransientPullError):
            answer = None
        for plugin in answer.plugins if answer is not None else ():
            # 1.6/1.7: io.containerd.grpc.v1 "cri"; 2.x: io.containerd.cri.v1 "runtime", "images"
            if (plugin.id == "cri" or plugin.type.startswith("io.containerd.cri.")) and plugin.platforms:
                p = plugin.platforms[0]
                return "/".join(part for part in (p.os, p.architecture, p.variant) if part)
        return host_platform()


def host_platform():
    """``os/arch[/variant]`` of this host as Go names them (``linux/arm64``)."""
    machine = _platform.machine().lower()
    goos = "windows" if sys.platform.startswith("win") else sys.platform.rstrip("0123456789")
    return "%s/%s" % (goos, _GOARCH.get(machine, machine))
