# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemon connection options of the modules (doc fragments ``bbklab.puller.docker``
and ``bbklab.puller.runtime``), defined once: the argument spec and what they mean for the engine."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import socket

from ._daemon import DaemonTLS
from ._errors import InvalidRequest
from ._redact import secrets_of

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_DAEMON_TIMEOUT = 60  # seconds, as community.docker's timeout
# Where kubespray and most installs put containerd's socket (crictl's default too).
DEFAULT_CRI_ENDPOINT = "unix:///run/containerd/containerd.sock"
RUNTIMES = ("auto", "docker", "cri")


def connection_argument_spec():
    """community.docker's names, aliases and environment fallbacks (see its ``_docker`` doc fragment)."""
    from ansible.module_utils.basic import env_fallback

    return dict(
        docker_host=dict(type="str", default=DEFAULT_DOCKER_HOST, aliases=["docker_url"],
                         fallback=(env_fallback, ["DOCKER_HOST"])),
        tls_hostname=dict(type="str", fallback=(env_fallback, ["DOCKER_TLS_HOSTNAME"])),
        api_version=dict(type="str", default="auto", aliases=["docker_api_version"],
                         fallback=(env_fallback, ["DOCKER_API_VERSION"])),
        timeout=dict(type="int", default=DEFAULT_DAEMON_TIMEOUT, fallback=(env_fallback, ["DOCKER_TIMEOUT"])),
        ca_path=dict(type="path", aliases=["ca_cert", "tls_ca_cert", "cacert_path"]),
        client_cert=dict(type="path", aliases=["tls_client_cert", "cert_path"]),
        client_key=dict(type="path", aliases=["tls_client_key", "key_path"], no_log=False),
        tls=dict(type="bool", default=False, fallback=(env_fallback, ["DOCKER_TLS"])),
        validate_certs=dict(type="bool", default=False, aliases=["tls_verify"],
                            fallback=(env_fallback, ["DOCKER_TLS_VERIFY"])),
        # The CRI (a Kubernetes node's containerd), with crictl's variable.
        runtime=dict(type="str", choices=list(RUNTIMES), default="auto"),
        runtime_endpoint=dict(type="str", fallback=(env_fallback, ["CONTAINER_RUNTIME_ENDPOINT"])),
    )


def credentials_argument_spec():
    """The options of the ``bbklab.puller.credentials`` doc fragment."""
    auth_spec = dict(
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        auth=dict(type="str", no_log=True),
        email=dict(type="str"),
        serveraddress=dict(type="str"),
        identitytoken=dict(type="str", no_log=True),
        registrytoken=dict(type="str", no_log=True),
    )
    return dict(
        auth_config=dict(type="dict", options=auth_spec),
        mirror_auth=dict(type="dict", no_log=False),  # its values are masked one by one (hide_item_credentials)
        host_credentials=dict(type="bool", default=True),
    )


def hide_item_credentials(module):
    """Per-item auth_config and per-mirror credentials sit in raw lists and dicts, out of reach of
    no_log: mask them by value."""
    configs = [item["auth_config"] for item in module.params["images"] or []
               if isinstance(item, dict) and isinstance(item.get("auth_config"), dict)]
    configs += [auth for auth in (module.params["mirror_auth"] or {}).values() if isinstance(auth, dict)]
    for auth in configs:
        for secret in secrets_of(auth):
            module.no_log_values.add(secret)


def request_body(params, check_mode):
    """The API body of a module's images and request options, the module-level ``auth_config``
    applied to every item lacking one (the modules' own options are added by each)."""
    default_auth = dict((k, v) for k, v in (params["auth_config"] or {}).items() if v is not None)
    images = []
    for item in params["images"]:
        if isinstance(item, dict):
            item = dict(item)
            if not item.get("auth_config") and default_auth:
                item["auth_config"] = default_auth
        elif default_auth:
            item = {"image": item, "auth_config": default_auth}
        images.append(item)
    return {"images": images, "concurrency": params["concurrency"], "retry": params["retry"],
            "dry_run": check_mode, "timeout": params["deadline"]}


def api_argument_spec():
    """The options of the ``bbklab.puller.api`` doc fragment."""
    return dict(
        api_url=dict(type="str"),
        api_token=dict(type="str", no_log=True),
        wait_timeout=dict(type="int"),
        api_validate_certs=dict(type="bool", default=True),
    )


def runtime_of(params, speaks=None):
    """``(cri_endpoint, docker_host)``: the CRI endpoint the options ask for
    (None for the Docker API), and the Docker daemon's address.

    ``auto`` asks what answers (``speaks``, by default ``endpoint_speaks``):
    a ``runtime_endpoint`` (or its variable) that speaks the Docker API is
    used as the Docker daemon (Podman's socket named there, say), any other
    is the CRI. Without one, the Docker daemon at ``docker_host`` when it
    answers; else, when ``docker_host`` is the default and nothing answers
    there, the CRI at its default socket if it speaks gRPC (a kubespray node
    has containerd and no Docker); else the Docker daemon, whose error then
    says what is missing.
    """
    speaks = speaks or endpoint_speaks
    runtime, endpoint = params.get("runtime") or "auto", params.get("runtime_endpoint")
    docker_host = params.get("docker_host")
    if runtime == "docker":
        return None, docker_host
    if runtime == "cri":
        return endpoint or DEFAULT_CRI_ENDPOINT, docker_host
    if endpoint:
        return (None, endpoint) if speaks(endpoint) == SPEAKS_DOCKER else (endpoint, docker_host)
    if docker_host in (None, DEFAULT_DOCKER_HOST) and speaks(DEFAULT_DOCKER_HOST) != SPEAKS_DOCKER \
            and speaks(DEFAULT_CRI_ENDPOINT) == SPEAKS_GRPC:
        return DEFAULT_CRI_ENDPOINT, docker_host
    return None, docker_host


SPEAKS_DOCKER, SPEAKS_GRPC = "docker", "grpc"
_PING = b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def endpoint_speaks(endpoint, timeout=2.0):
    """What listens on a Unix socket endpoint: ``docker`` (an HTTP/1.1 API:
    dockerd, Podman), ``grpc`` (an HTTP/2-only server, as containerd and
    CRI-O are), or None (nothing there, or not a Unix socket)."""
    path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
    if not path.startswith("/"):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(_PING)
        head = sock.recv(16)
    except (OSError, socket.timeout):
        return None
    finally:
        sock.close()
    if head.startswith(b"HTTP/1."):
        return SPEAKS_DOCKER
    # An HTTP/2 server's first frame is its SETTINGS (frame type 4, at byte 3).
    if len(head) >= 9 and head[3:4] == b"\x04":
        return SPEAKS_GRPC
    return None


def daemon_tls(params, environ=None):
    """The ``DaemonTLS`` these options ask for, or None; ``DOCKER_CERT_PATH`` fills in missing files."""
    environ = os.environ if environ is None else environ
    if params.get("tls_hostname"):
        raise InvalidRequest("not supported with the Docker SDK for Python 7: the daemon's certificate must name "
                             "the host in docker_host", "tls_hostname")
    cert_dir = environ.get("DOCKER_CERT_PATH")

    def pick(given, name):
        if given:
            return given
        path = os.path.join(cert_dir, name) if cert_dir else None
        return path if path and os.path.exists(path) else None

    files = (pick(params.get("ca_path"), "ca.pem"), pick(params.get("client_cert"), "cert.pem"),
             pick(params.get("client_key"), "key.pem"))
    if not (params.get("validate_certs") or params.get("tls")):
        return None
    return DaemonTLS(verify=bool(params.get("validate_certs")), ca_cert=files[0], client_cert=files[1],
                     client_key=files[2], hostname=None)
