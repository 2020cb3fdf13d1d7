# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Credentials for images that came without an ``auth_config``.

``HostCredentials`` finds them the way ``docker pull`` does, with docker-py's
``docker.auth``: ``config.json`` (``DOCKER_CONFIG``, then
``~/.docker/config.json``), its ``auths``, ``credsStore`` and ``credHelpers``
(running ``docker-credential-<name>``, bounded: see ``_credhelper``),
identity tokens included. ``FileCredentials`` is a server operator's file of
registry -> credentials. A ``CredentialChain`` asks each in turn; the
request's own ``auth_config`` always wins, and is never looked up.
``RegistryLookups`` is one request's view: each registry asked once, under
the deadline of the image that needs it.

Whatever goes wrong (a helper that hangs, fails or answers nonsense, a
malformed ``config.json``) is a ``PullFailed`` of the images of that registry,
with a short message that never quotes what the helper printed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import json
import logging
import os
import stat
import threading
import time

from ._errors import DeadlineExceeded, InvalidRequest, PermanentPullError, PullFailed
from ._redact import redact

log = logging.getLogger("puller.engine")

# docker.auth answers with two spellings; the daemon's AuthConfig wants these.
_KEYS = {"username": "username", "password": "password", "auth": "auth", "email": "email",
         "serveraddress": "serveraddress", "identitytoken": "identitytoken", "registrytoken": "registrytoken"}
MESSAGE_LIMIT = 200  # a credential error is a row's errmsg: a sentence, not a dump
POLL = 0.25  # how often an image waiting for another's lookup checks for a cancel


def _normalize(found):
    if not found:
        return {}
    auth = {}
    for key, value in found.items():
        name = _KEYS.get(str(key).lower())
        if name and isinstance(value, str) and value:
            auth[name] = value
    return auth


def _bounded(text):
    text = redact(text)
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT - 3] + "..."


def require_owner_only(path, field):
    """Refuse a file of secrets that its group or others may read (``InvalidRequest`` naming ``field``);
    ``OSError`` when it cannot be looked at."""
    if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidRequest("%s must be readable by its owner only (chmod 600)" % path, field)


class _Malformed(dict):
    """Stands in ``auths`` for an entry docker.auth cannot parse: resolving to it is this registry's error."""

    def __init__(self, problem):
        super(_Malformed, self).__init__()
        self.problem = problem


def _entry_problem(exc):
    """What is wrong with an ``auths`` entry, from how docker.auth's parser failed (never its value)."""
    if isinstance(exc, (AttributeError, TypeError)):
        return "its auth is not a string"
    if isinstance(exc, UnicodeError):
        return "its auth is not base64 of UTF-8 text"
    if isinstance(exc, binascii.Error):
        return "its auth is not valid base64"
    if isinstance(exc, ValueError):
        return "its auth does not decode to user:password"
    return "it is not an object"


class HostCredentials:
    """The host's Docker credentials; ``config.json`` is read again each time, as ``docker pull`` does."""

    def __init__(self, config_path=None):
        self.config_path = config_path

    def lookup(self, registry, deadline_at=None, cancel=None):
        """Credentials for ``registry`` (``{}``: none); a helper runs until ``deadline_at``
        (``time.monotonic()``) or ``cancel``. Raises ``PullFailed``."""
        from docker.errors import DockerException

        from ._credhelper import HelperError

        config, path = self._config(registry)
        config.deadline_at, config.cancel = deadline_at, cancel
        try:
            found = config.resolve_authconfig(registry)
        except DockerException as exc:
            cause = exc.__cause__  # docker.auth wraps the store's error in its own
            if isinstance(cause, HelperError) and cause.timed_out:
                raise DeadlineExceeded(_bounded("timeout: the host's credential helper for %s: %s"
                                                % (registry, cause.message)))
            reason = cause.message if isinstance(cause, HelperError) else type(cause or exc).__name__
            raise PermanentPullError(_bounded("the host's credential helper for %s failed: %s" % (registry, reason)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:  # credHelpers or credsStore of a wrong type
            raise _malformed(registry, path, "it is not a valid Docker config (%s)" % type(exc).__name__)
        if isinstance(found, _Malformed):
            raise _malformed(registry, path, found.problem)
        return _normalize(found)

    def _config(self, registry):
        """``(config, path)``: the ``BoundedAuthConfig`` of the host's file; when docker.auth cannot load it, the same with
        each unparseable ``auths`` entry standing as ``_Malformed``, so only its registry fails."""
        from docker.errors import DockerException
        from docker.utils.config import find_config_file

        from ._credhelper import BoundedAuthConfig

        path = find_config_file(self.config_path)
        try:
            return BoundedAuthConfig.load_config(path, None), path
        except (DockerException, AttributeError, KeyError, TypeError, ValueError):
            pass
        from docker import auth

        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise _malformed(registry, path, "it cannot be read (%s)" % reason)
        if not isinstance(data, dict):
            raise _malformed(registry, path, "it is not a JSON object")
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            raise _malformed(registry, path, "its auths is not an object")
        good, bad = {}, {}
        for key, entry in auths.items():
            try:
                auth.parse_auth({key: entry}, raise_on_error=True)
                good[key] = entry
            except (DockerException, AttributeError, TypeError, ValueError) as exc:
                bad[key] = _Malformed('auths entry "%s": %s' % (key[:60], _entry_problem(exc)))
        try:
            config = BoundedAuthConfig.load_config(None, dict(data, auths=good))
        except (DockerException, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise _malformed(registry, path, "it is not a valid Docker config (%s)" % type(exc).__name__)
        config["auths"].update(bad)
        return config, path


def _malformed(registry, path, problem):
    # The file's path last: when the message must be cut short, the problem stays.
    return PermanentPullError(_bounded("no credentials for %s: the host's Docker config is malformed: %s (%s)"
                                       % (registry, problem, path)))


class FileCredentials:
    """``{"registry": {"username": ..., "password": ...}, ...}`` from a file of mode 0600, reloadable."""

    def __init__(self, path):
        self.path = path
        self._by_registry = {}
        self.reload()

    def reload(self):
        """Read the file again; returns how many registries it names. Raises ``InvalidRequest`` if unusable."""
        try:
            require_owner_only(self.path, "--credentials-file")
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

    def lookup(self, registry, deadline_at=None, cancel=None):  # pylint: disable=unused-argument
        return dict(self._by_registry.get(registry) or {})


class CredentialChain:
    """Ask each source in turn; the first that knows the registry answers."""

    def __init__(self, sources):
        self.sources = [s for s in sources if s is not None]

    def lookup(self, registry, deadline_at=None, cancel=None):
        for source in self.sources:
            found = source.lookup(registry, deadline_at=deadline_at, cancel=cancel)
            if found:
                return found
        return {}


_ASKING = object()


class RegistryLookups:
    """One request's lookups in ``source``: each registry is asked once, by the
    first image that needs it and under that image's deadline; the request's
    other images of that registry wait for the answer, each until its own
    deadline or the request's ``cancel``."""

    def __init__(self, source, cancel=None):
        self.source = source
        self.cancel = cancel
        self._cond = threading.Condition()
        self._answers = {}  # registry -> credentials, a PullFailed, or _ASKING while the first image asks

    def lookup(self, registry, timeout):
        """Credentials for ``registry`` within ``timeout`` seconds; raises ``PullFailed``."""
        deadline_at = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._answers.get(registry) is _ASKING:
                self._wait(registry, deadline_at)
            answer = self._answers.get(registry)
            if answer is None:
                self._answers[registry] = _ASKING
        if answer is None:
            answer = self._ask(registry, deadline_at)
            with self._cond:
                self._answers[registry] = answer
                self._cond.notify_all()
        if isinstance(answer, PullFailed):
            raise type(answer)(answer.message)  # a fresh one per image: they raise it in threads of their own
        return dict(answer)

    def _wait(self, registry, deadline_at):
        if self.cancel is not None and self.cancel.is_set():
            raise PermanentPullError("cancelled while the credentials for %s were looked up" % registry)
        left = deadline_at - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("timeout: the credentials for %s were still being looked up at the image's "
                                   "deadline" % registry)
        self._cond.wait(min(left, POLL))

    def _ask(self, registry, deadline_at):
        try:
            return self.source.lookup(registry, deadline_at=deadline_at, cancel=self.cancel)
        except PullFailed as exc:
            return exc
        except Exception as exc:  # pylint: disable=broad-except  # a bug fails this registry's images, not the request
            log.error("looking up credentials for %s failed unexpectedly: %s", registry, type(exc).__name__)
            return PermanentPullError("no credentials for %s: unexpected %s" % (registry, type(exc).__name__))
