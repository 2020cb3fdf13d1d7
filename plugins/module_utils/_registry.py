# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tiny client of the registry HTTP API v2: manifests only, on the stdlib.

The CRI runtime asks the registry for an image's manifest (to know which
downloads containerd shows belong to which pull) and for a tag's digest. CRI
nodes often have no ``requests``, so this speaks ``http.client`` itself:

- ``Accept``: OCI index and manifest, Docker manifest list and v2 manifest;
  an index is followed to the manifest of the node's platform;
- auth as the registry asks for it (``WWW-Authenticate``): a Bearer token
  from the realm (with the basic credentials, a refresh token or none), or
  Basic; a ``registrytoken`` is sent as the Bearer token itself;
- plain HTTP only to loopback hosts and to the hosts named insecure; HTTPS,
  verified, everywhere else; credentials never go to a plain HTTP token realm
  on another host, nor along a redirect to another host;
- one timeout bounds the whole exchange (token, index, manifest).

Errors are the engine's typed ones and never carry the credentials.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import http.client
import json
import socket
import ssl
import time
from collections import namedtuple
from urllib.parse import urlencode, urljoin, urlsplit

from ._errors import PermanentPullError, TransientPullError, pull_error
from ._redact import redact, secrets_of
from ._platforms import select_manifest
from ._reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, Reference, parse_reference

DOCKER_HUB_HOST = "registry-1.docker.io"  # where docker.io's API lives
DEFAULT_TIMEOUT = 10.0
MAX_MANIFEST_BYTES = 4 << 20  # distribution refuses to store bigger ones
MAX_TOKEN_BYTES = 1 << 20
MAX_REDIRECTS = 3
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))


class Descriptor(namedtuple("Descriptor", "digest size media_type")):
    __slots__ = ()


class ImageManifest(namedtuple("ImageManifest", "digest index_digest config layers")):
    """The platform's manifest: its digest, the index's (or None), the config
    and layer ``Descriptor``s."""

    __slots__ = ()

    def digests(self):
        """Every blob a pull of this image downloads (index, manifest, config, layers)."""
        found = {self.digest, self.config.digest} | set(layer.digest for layer in self.layers)
        if self.index_digest:
            found.add(self.index_digest)
        return found


def parse_challenges(header):
    """``WWW-Authenticate`` as ``[(scheme, {param: value})]`` (scheme in lower case).

    RFC 7235: challenges are separated by commas, as their parameters are; a
    token not followed by ``=`` starts the next challenge. Values may be
    quoted strings with backslash escapes.
    """
    challenges, i, n = [], 0, len(header or "")
    text = header or ""
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        start = i
        while i < n and text[i] not in " \t,=":
            i += 1
        token = text[start:i]
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if not token:
            i += 1
            continue
        if j < n and text[j] == "=" and challenges:  # a parameter of the current challenge
            i = j + 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                value, i = _quoted(text, i + 1)
            else:
                start = i
                while i < n and text[i] not in " \t,":
                    i += 1
                value = text[start:i]
            challenges[-1][1][token.lower()] = value
        else:
            challenges.append((token.lower(), {}))
            i = j
    return challenges


def _quoted(text, i):
    out = []
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i


def registry_host(domain):
    """The host that serves ``domain``'s API (docker.io's is elsewhere)."""
    return DOCKER_HUB_HOST if domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN) else domain


def host_only(hostport):
    """``[::1]:5000`` -> ``::1``; ``localhost:5000`` -> ``localhost``."""
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def plain_http_allowed(hostport, insecure_registries=()):
    """Whether ``hostport`` may be spoken to in plain HTTP: loopback, or named insecure."""
    return host_only(hostport).lower() in LOOPBACK_HOSTS or hostport in insecure_registries or \
        host_only(hostport) in insecure_registries


def credentials_for(host, auth_config):
    """``auth_config`` when it may go to ``host``, else none: credentials that
    name another ``serveraddress`` are not this registry's (containerd, too,
    sends them only to the host they name)."""
    auth = dict(auth_config or {})
    address = auth.get("serveraddress")
    if address:
        named = address.rpartition("://")[2].split("/", 1)[0]
        if registry_host(named) != host:
            return {}
    return auth


def _as_reference(ref):
    return ref if isinstance(ref, Reference) else parse_reference(ref)


class _Response(namedtuple("_Response", "status headers body url")):
    __slots__ = ()


class RegistryClient:
    """Manifests and digests from registries; thread-safe (no state between calls)."""

    def __init__(self, timeout=DEFAULT_TIMEOUT, insecure_registries=(), user_agent="puller"):
        self.timeout = float(timeout)
        self.insecure_registries = tuple(insecure_registries or ())
        self.user_agent = user_agent
        self._tls = ssl.create_default_context()

    # -- the API --------------------------------------------------------------------
    def manifest(self, ref, platform, auth_config=None, timeout=None):
        """The ``ImageManifest`` of ``ref`` (a ``Reference`` or its text) for ``platform``."""
        ref = _as_reference(ref)
        session = _Session(self, ref, auth_config, timeout)
        return session.run(lambda: self._manifest(session, ref, platform))

    def digest(self, ref, auth_config=None, timeout=None):
        """The digest the registry gives for ``ref``'s tag (or digest): a HEAD, then a GET if it says none."""
        ref = _as_reference(ref)
        session = _Session(self, ref, auth_config, timeout)
        return session.run(lambda: self._digest(session, ref))

    def manifests(self, ref, auth_config=None, timeout=None):
        """``[(digest, document)]``: the manifest at ``ref`` and, when it is an index, each one it lists."""
        ref = _as_reference(ref)
        session = _Session(self, ref, auth_config, timeout)

        def work():
            resp = session.get_manifest(ref.digest or ref.tag or "latest")
            found = [(_content_digest(resp, ref.digest), _document(resp))]
            if _media_type(resp, found[0][1]) in INDEX_TYPES:
                for entry in found[0][1].get("manifests") or ():
                    found.append((entry.get("digest"), _document(session.get_manifest(entry.get("digest")))))
            return found
        return session.run(work)

    def _manifest(self, session, ref, platform):
        resp = session.get_manifest(ref.digest or ref.tag or "latest")
        document, digest = _document(resp), _content_digest(resp, ref.digest)
        index_digest = None
        if _media_type(resp, document) in INDEX_TYPES:
            entry = select_manifest(document, platform)
            if entry is None:
                raise PermanentPullError("no matching manifest for %s in the index of %s" % (platform, ref))
            index_digest, digest = digest, entry.get("digest")
            resp = session.get_manifest(digest)
            document = _document(resp)
        try:
            config = _descriptor(document["config"])
            layers = tuple(_descriptor(layer) for layer in document.get("layers") or ())
        except (KeyError, TypeError, ValueError):
            raise PermanentPullError("the manifest of %s is not an image manifest" % ref)
        return ImageManifest(digest, index_digest, config, layers)

    def _digest(self, session, ref):
        reference = ref.digest or ref.tag or "latest"
        resp = session.get_manifest(reference, method="HEAD")
        found = resp.headers.get("docker-content-digest")
        if found:
            return found
        return _content_digest(session.get_manifest(reference), ref.digest)

    # -- one HTTP exchange ----------------------------------------------------------
    def _scheme(self, hostport):
        return "http" if plain_http_allowed(hostport, self.insecure_registries) else "https"

    def request(self, method, url, headers, timeout, body=None):
        """One request (redirects followed; ``Authorization`` kept only on the
        same host); a ``_Response`` with the body read, at most the manifest limit."""
        for _hop in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https"):
                raise PermanentPullError("the registry sent an unsupported URL scheme: %s" % parts.scheme)
            if parts.scheme == "http" and not plain_http_allowed(parts.netloc, self.insecure_registries):
                raise PermanentPullError("refusing plain HTTP to %s (not a loopback or insecure registry)"
                                         % parts.netloc)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.netloc, timeout=timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
            try:
                path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
                conn.request(method, path, body=body, headers=dict(headers, **{"User-Agent": self.user_agent}))
                resp = conn.getresponse()
                data = b"" if method == "HEAD" else resp.read(MAX_MANIFEST_BYTES + 1)
                answer = _Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, url)
            finally:
                conn.close()
            if answer.status in (301, 302, 303, 307, 308) and answer.headers.get("location"):
                target = urljoin(url, answer.headers["location"])
                if urlsplit(target).netloc != parts.netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = target
                continue
            if len(answer.body) > MAX_MANIFEST_BYTES:
                raise PermanentPullError("the registry's answer from %s is bigger than %d bytes"
                                         % (parts.netloc, MAX_MANIFEST_BYTES))
            return answer
        raise TransientPullError("too many redirects from %s" % urlsplit(url).netloc)


class _Session:
    """One exchange with a registry for one repository: its deadline, its credentials, the token it got."""

    def __init__(self, client, ref, auth_config, timeout):
        self.client = client
        self.ref = ref
        self.secrets = secrets_of(auth_config)
        self.deadline = time.monotonic() + (client.timeout if timeout is None else float(timeout))
        self.host = registry_host(ref.domain)
        self.auth = credentials_for(self.host, auth_config)
        self.base = "%s://%s/v2/%s" % (client._scheme(self.host), self.host, ref.path)
        self.authorization = None  # the header that worked, reused for the index's manifest

    def run(self, work):
        try:
            return work()
        except (PermanentPullError, TransientPullError):
            raise
        except (socket.timeout, TimeoutError):
            raise TransientPullError("timeout: registry %s did not answer within the deadline" % self.host)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise TransientPullError(redact("error talking to registry %s: %s" % (self.host, exc), self.secrets))

    def left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TransientPullError("timeout: registry %s did not answer within the deadline" % self.host)
        return left

    def get_manifest(self, reference, method="GET"):
        url = "%s/manifests/%s" % (self.base, reference)
        headers = {"Accept": ACCEPT}
        if self.authorization:
            headers["Authorization"] = self.authorization
        resp = self.client.request(method, url, headers, self.left())
        if resp.status == 401 and self.authorization is None:
            self.authorization = self._authorize(resp)
            if self.authorization:
                headers["Authorization"] = self.authorization
                resp = self.client.request(method, url, headers, self.left())
        if resp.status != 200:
            raise self._error(resp, "manifest %s of %s" % (reference, self.ref.name))
        return resp

    def _error(self, resp, what):
        detail = ""
        try:
            errors = json.loads(resp.body.decode("utf-8")).get("errors") or []
            detail = "; ".join("%s: %s" % (e.get("code", ""), e.get("message", "")) for e in errors)
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
        reason = http.client.responses.get(resp.status, "")
        message = redact("%s: status %d %s%s" % (what, resp.status, reason, ": " + detail if detail else ""),
                         self.secrets)
        if resp.status == 401:
            message += " (unauthorized)"
        return pull_error(message, resp.status)

    # -- auth -------------------------------------------------------------------------
    def _authorize(self, resp):
        """The ``Authorization`` header the registry's challenge calls for, or None."""
        challenges = parse_challenges(resp.headers.get("www-authenticate", ""))
        user, password = self._basic()
        for scheme, params in challenges:
            if scheme == "bearer" and params.get("realm"):
                if self.auth.get("registrytoken"):
                    return "Bearer " + self.auth["registrytoken"]
                return "Bearer " + self._token(params, user, password)
        for scheme, _params in challenges:
            if scheme == "basic" and user:
                return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        return None

    def _basic(self):
        user, password = self.auth.get("username") or "", self.auth.get("password") or ""
        if not user and self.auth.get("auth"):
            try:
                user, _sep, password = base64.b64decode(self.auth["auth"]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user = password = ""
        return user, password

    def _token(self, params, user, password):
        realm = params["realm"]
        parts = urlsplit(realm)
        if parts.scheme == "http" and not plain_http_allowed(parts.netloc, self.client.insecure_registries):
            raise PermanentPullError("refusing to ask the token realm %s over plain HTTP" % parts.netloc)
        scope = params.get("scope") or "repository:%s:pull" % self.ref.path
        query = {"scope": scope}
        if params.get("service"):
            query["service"] = params["service"]
        headers, body, method = {}, None, "GET"
        refresh = self.auth.get("identitytoken")
        if refresh:  # an OAuth2 refresh token (docker login with an identity provider)
            method = "POST"
            body = urlencode(dict(query, grant_type="refresh_token", refresh_token=refresh,
                                  client_id=self.client.user_agent))
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            url = realm + ("&" if parts.query else "?") + urlencode(query)
            if user:
                headers["Authorization"] = "Basic " + base64.b64encode(
                    ("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        resp = self.client.request(method, url, headers, self.left(), body=body)
        if resp.status != 200:
            raise self._error(resp, "token from %s" % parts.netloc)
        try:
            answer = json.loads(resp.body[:MAX_TOKEN_BYTES].decode("utf-8"))
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError, UnicodeDecodeError):
            token = None
        if not token or not isinstance(token, str):
            raise TransientPullError("the token realm %s gave no token" % parts.netloc)
        return token


def _document(resp):
    try:
        document = json.loads(resp.body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PermanentPullError("the registry's manifest at %s is not JSON" % resp.url)
    if not isinstance(document, dict):
        raise PermanentPullError("the registry's manifest at %s is not a JSON object" % resp.url)
    return document


def _media_type(resp, document):
    return document.get("mediaType") or resp.headers.get("content-type", "").split(";", 1)[0].strip()


def _content_digest(resp, pinned):
    """The manifest's digest: the pinned one, the registry's header, or the body's sha256."""
    return pinned or resp.headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(resp.body).hexdigest()


def _descriptor(entry):
    digest, size = entry["digest"], entry.get("size")
    if not isinstance(digest, str) or not isinstance(size, int):
        raise ValueError("bad descriptor")
    return Descriptor(digest, size, entry.get("mediaType") or "")
