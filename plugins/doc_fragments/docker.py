# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The daemon connection, with community.docker's option names, aliases and environment fallbacks."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker daemon in direct mode, a Unix socket path or URL, for example V(unix:///var/run/docker.sock) or
        V(tcp://192.0.2.23:2376). With TLS, C(tcp) is replaced by C(https).
      - If not given, the environment variable E(DOCKER_HOST), else the default.
    type: str
    default: unix:///var/run/docker.sock
    aliases: [docker_url]
  tls_hostname:
    description:
      - The name expected in the daemon's certificate. The Docker SDK for Python 7 checks the name in the URL
        instead; given with it, this is an error naming the option.
      - If not given, the environment variable E(DOCKER_TLS_HOSTNAME).
    type: str
  api_version:
    description:
      - The Docker API version; V(auto) asks the daemon.
      - If not given, the environment variable E(DOCKER_API_VERSION), else the default.
    type: str
    default: auto
    aliases: [docker_api_version]
  timeout:
    description:
      - Seconds to wait for an answer from the daemon's API; a pull's own limit is O(deadline).
      - If not given, the environment variable E(DOCKER_TIMEOUT), else the default.
      - In 0.1.0 this was the per-image deadline, a duration such as V(10m); that is O(deadline) since 0.2.0.
    type: int
    default: 60
    version_added: 0.2.0
  ca_path:
    description:
      - The CA certificate the daemon's certificate must be signed by. It wins over E(REQUESTS_CA_BUNDLE) and
        E(CURL_CA_BUNDLE).
      - If not given and E(DOCKER_CERT_PATH) is set, C(ca.pem) in that directory.
    type: path
    aliases: [ca_cert, tls_ca_cert, cacert_path]
  client_cert:
    description:
      - The client's TLS certificate.
      - If not given and E(DOCKER_CERT_PATH) is set, C(cert.pem) in that directory.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - The client's TLS key.
      - If not given and E(DOCKER_CERT_PATH) is set, C(key.pem) in that directory.
    type: path
    aliases: [tls_client_key, key_path]
  tls:
    description:
      - TLS to the daemon without verifying its certificate; O(validate_certs) takes precedence.
      - If not given, the environment variable E(DOCKER_TLS), else the default.
    type: bool
    default: false
  validate_certs:
    description:
      - TLS to the daemon, verifying its certificate.
      - If not given, the environment variable E(DOCKER_TLS_VERIFY), else the default.
      - In 0.1.0 this was the check of the puller server's certificate in API mode (default V(true)); that is
        O(api_validate_certs) since 0.2.0.
    type: bool
    default: false
    version_added: 0.2.0
    aliases: [tls_verify]
notes:
  - The daemon connection takes community.docker's option names, aliases and environment variables
    (E(DOCKER_HOST), E(DOCKER_TLS_HOSTNAME), E(DOCKER_API_VERSION), E(DOCKER_CERT_PATH), E(DOCKER_TLS),
    E(DOCKER_TLS_VERIFY), E(DOCKER_TIMEOUT)).
"""
