# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials for images that came without an ``auth_config``.

``HostCredentials`` finds them the way ``docker pull`` does, with docker-py's
``docker.auth``: ``config.json`` (``DOCKER_CONFIG``, then
``~/.docker/config.json``), its ``auths``, ``credsStore`` and ``credHelpers``
(running ``docker-credential-<name>``), identity tokens included.
``FileCredentials`` is a server operator's file of registry -> credentials.
A ``CredentialChain`` asks each in turn; the request's own ``auth_config``
always wins, and is never looked up.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import stat

from ._errors import InvalidRequest, PermanentPullError
from ._redact import redact

# docker.auth answers with two spellings; the daemon's AuthConfig wants these.
_KEYS = {"username": "username", "password": "password", "auth": "auth", "email": "email",
         "serveraddress": "serveraddress", "identitytoken": "identitytoken", "registrytoken": "registrytoken"}


def _normalize(found):
    if not found:
        return {}
    auth = {}
    for key, value in found.items():
        name = _KEYS.get(str(key).lower())
        if name and isinstance(value, str) and value:
            auth[name] = value
    return auth


class HostCredentials:
    """The host's Docker credentials; ``config.json`` is read again each time, as ``docker pull`` does."""

    def __init__(self, config_path=None):
        self.config_path = config_path

    def lookup(self, registry):
        from docker import auth
        from docker.errors import DockerException

        try:
            config = auth.load_config(self.config_path)
            found = config.resolve_authconfig(registry)
        except DockerException as exc:
            raise PermanentPullError("the host's credential helper for %s failed: %s"
                                     % (registry, redact(str(exc))))
        return _normalize(found)


class FileCredentials:
    """``{"registry": {"username": ..., "password": ...}, ...}`` from a file of mode 0600, reloadable."""

    def __init__(self, path):
        self.path = path
        self._by_registry = {}
        self.reload()

    def reload(self):
        """Read the file again; returns how many registries it names. Raises ``InvalidRequest`` if unusable."""
        try:
            mode = os.stat(self.path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise InvalidRequest("%s must be readable by its owner only (chmod 600)" % self.path,
                                     "--credentials-file")
            with open(self.path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InvalidRequest("cannot read credentials from %s: %s" % (
                self.path, getattr(exc, "strerror", None) or type(exc).__name__), "--credentials-file")
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise InvalidRequest("%s must map a registry host to an object of credentials" % self.path,
                                 "--credentials-file")
        self._by_registry = dict((registry, _normalize(auth)) for registry, auth in data.items())
        return len(self._by_registry)

    def lookup(self, registry):
        return dict(self._by_registry.get(registry) or {})


class CredentialChain:
    """Ask each source in turn; the first that knows the registry answers."""

    def __init__(self, sources):
        self.sources = [s for s in sources if s is not None]

    def lookup(self, registry):
        for source in self.sources:
            found = source.lookup(registry)
            if found:
                return found
        return {}
