# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The mirror map: for any registry host, the mirrors to try first, in order.

dockerd's own ``registry-mirrors`` serves Docker Hub only; here any registry
(``docker.io`` included) can have mirrors. A map comes from the operator (the
server's ``--mirror``, the module's ``mirrors``) and may be overridden per
request; an empty list for a registry means "origin only".

Trust: an image pulled from a mirror ends up under the origin's name. When the
origin confirms the tag's digest, the daemon verifies the content against it
and a mirror can plant nothing. Without that confirmation only mirrors the
operator configured are used; mirrors an API caller named in the request are
refused unless the server allows them, and even then never used unconfirmed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import namedtuple

from ._errors import InvalidRequest, RequestForbidden
from ._reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN

_HOST_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
                      r"|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$")


class Mirror(namedtuple("Mirror", "host auth_config trusted")):
    """One mirror endpoint: ``host[:port]``, its own credentials, and whether the operator named it."""

    __slots__ = ()


def normalize_host(value, field):
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("must be a registry host such as mirror.example.com:5000", field)
    host = value.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme):]
    host = host.rstrip("/")
    if not _HOST_RE.match(host):
        raise InvalidRequest("%r is not a registry host (HOST or HOST:PORT, no path)" % value, field)
    return DEFAULT_DOMAIN if host in (LEGACY_DEFAULT_DOMAIN, "registry-1.docker.io") else host


def parse_mirror_map(value, field="mirrors"):
    """``{"registry": ["mirror", ...]}`` -> ``{registry: (host, ...)}``, hosts checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("must be an object mapping a registry host to a list of mirror hosts", field)
    parsed = {}
    for registry, mirrors in value.items():
        key = normalize_host(registry, field)
        where = "%s.%s" % (field, registry)
        if isinstance(mirrors, str):
            mirrors = [m for m in mirrors.split(",") if m.strip()]
        if not isinstance(mirrors, list):
            raise InvalidRequest("must be a list of mirror hosts ([] for the origin only)", where)
        hosts = []
        for i, mirror in enumerate(mirrors):
            host = normalize_host(mirror, "%s[%d]" % (where, i))
            if host == key:
                raise InvalidRequest("a registry cannot be its own mirror", "%s[%d]" % (where, i))
            if host not in hosts:
                hosts.append(host)
        parsed[key] = tuple(hosts)
    return parsed


def parse_setting(entries):
    """The server's ``--mirror REGISTRY=MIRROR[,MIRROR...]`` (repeatable, or ``;``-separated in one string)."""
    if isinstance(entries, str):
        entries = [e for e in entries.replace("\n", ";").split(";") if e.strip()]
    mapping = {}
    for entry in entries or ():
        registry, sep, mirrors = entry.partition("=")
        if not sep:
            raise ValueError("%r: want REGISTRY=MIRROR[,MIRROR...]" % entry)
        try:
            mapping.update(parse_mirror_map({registry.strip(): mirrors}))
        except InvalidRequest as exc:
            raise ValueError("%r: %s" % (entry, exc.message))
    return mapping


def plan(registry, configured, requested, mirror_auth, allow_requested, field):
    """The mirrors to try for ``registry``: the request's list (if it names the
    registry) else the configured one, each with its own credentials."""
    hosts = requested[registry] if registry in requested else configured.get(registry, ())
    trusted_hosts = configured.get(registry, ())
    mirrors = []
    for host in hosts:
        trusted = host in trusted_hosts
        if not trusted and not allow_requested:
            raise RequestForbidden("mirror %s for %s was not configured on the server; it refuses mirrors named in "
                                   "requests (start it with --allow-request-mirrors to allow them)" % (host, registry),
                                   "%s.%s" % (field, registry))
        mirrors.append(Mirror(host, dict(mirror_auth.get(host) or {}), trusted))
    return tuple(mirrors)


def mirror_name(ref, host):
    """The repository on a mirror: the origin's path under the mirror's host."""
    return host + "/" + ref.path


def describe(mirrors):
    """The hosts only, for logs, ``/debug/dump`` and flight keys (never credentials)."""
    return tuple(m.host for m in mirrors)
