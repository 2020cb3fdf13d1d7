# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a ``/pull`` body into a ``PullRequest``.

The HTTP server and the Ansible module both speak this shape, so both call
``parse_pull_request``; every rejection is an ``InvalidRequest`` whose
``field`` names the culprit, e.g. ``images[2].tag``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import math
import re
from collections import namedtuple

from ._errors import InvalidRequest, RequestForbidden
from ._godur import parse_duration
from ._mirrors import normalize_host, parse_mirror_map, plan
from ._reference import InvalidReference, digest_error, resolve

DEFAULT_MAX_IMAGES = 1000
DEFAULT_CONCURRENCY = 1
DEFAULT_RETRY = 3
MAX_ATTEMPTS = 10
POLICY_ALWAYS = "always"
POLICY_MISSING = "missing"
PULL_POLICIES = (POLICY_ALWAYS, POLICY_MISSING)

# Docker's AuthConfig keys; anything else is most likely a typo ("passwd").
AUTH_CONFIG_KEYS = ("username", "password", "auth", "email", "serveraddress", "identitytoken", "registrytoken")


class PullSpec(namedtuple("PullSpec", "index ref image tag project auth_config mirrors platform")):
    """One requested image, as asked (``image``, ``tag``) and as resolved (``ref``);
    ``mirrors``: the ``Mirror`` endpoints to try before the origin; ``platform``:
    ``os/arch[/variant]`` to ask the daemon for, or None for its own."""

    __slots__ = ()

    def __new__(cls, index, ref, image, tag, project, auth_config, mirrors=(), platform=None):
        return super(PullSpec, cls).__new__(cls, index, ref, image, tag, project, auth_config, mirrors, platform)


class PullRequest(namedtuple("PullRequest", "specs concurrency attempts policy dry_run deadline")):
    """A validated request.

    ``specs`` in request order; ``attempts`` per image; ``policy`` is
    ``always`` (ask the registry even when the image is present) or
    ``missing``; ``dry_run`` pulls nothing and reports what would be pulled;
    ``deadline`` is seconds per image, or None for the engine's default.
    """

    __slots__ = ()

    def __new__(cls, specs, concurrency=DEFAULT_CONCURRENCY, attempts=DEFAULT_RETRY, policy=POLICY_ALWAYS,
                dry_run=False, deadline=None):
        return super(PullRequest, cls).__new__(cls, specs, concurrency, attempts, policy, dry_run, deadline)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_auth(value, field):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("must be an object", field)
    auth = {}
    for key, item in value.items():
        if key not in AUTH_CONFIG_KEYS:
            raise InvalidRequest("unknown key; expected one of %s" % ", ".join(AUTH_CONFIG_KEYS), "%s.%s" % (field, key))
        if item is None or item == "":
            continue
        if not isinstance(item, str):
            raise InvalidRequest("must be a string", "%s.%s" % (field, key))
        auth[key] = item
    return auth


def _parse_spec(index, item, default_auth):
    field = "images[%d]" % index
    if isinstance(item, str):
        item = {"image": item}
    if not isinstance(item, dict):
        raise InvalidRequest("must be an object with an image", field)
    image = item.get("image")
    if image is None or image == "":
        raise InvalidRequest("is required", field + ".image")
    if not isinstance(image, str):
        raise InvalidRequest("must be a string", field + ".image")
    tag = item.get("tag")
    project = item.get("project", "")
    if project is None:
        project = ""
    if not isinstance(project, str):
        raise InvalidRequest("must be a string", field + ".project")
    try:
        ref = resolve(image, tag)
    except InvalidReference as exc:
        raise InvalidRequest(str(exc), "%s.%s" % (field, getattr(exc, "field", "image")))
    ref = _pinned(ref, item.get("digest"), field + ".digest")
    auth = _parse_auth(item.get("auth_config"), field + ".auth_config") or dict(default_auth)
    shown_tag = tag if isinstance(tag, str) and tag else (ref.tag or ref.digest)
    platform = parse_platform(item.get("platform"), field + ".platform")
    return PullSpec(index, ref, image, shown_tag, project, auth, (), platform)


def _pinned(ref, digest, field):
    """``ref`` pinned to a resolved ``digest`` (a preheat's row gives it): the
    image is pulled by digest, verified against it, and its tag put on it."""
    if digest is None or digest == "":
        return ref
    if not isinstance(digest, str):
        raise InvalidRequest("must be a string such as sha256:<64 hex digits>", field)
    error = digest_error(digest)
    if error:
        raise InvalidRequest(error, field)
    if ref.digest and ref.digest != digest:
        raise InvalidRequest("differs from the digest the image already pins (%s)" % ref.digest, field)
    return ref._replace(digest=digest)


def _parse_count(body, key, default):
    value = body.get(key)
    if value is None:
        return default
    if not _is_int(value):
        raise InvalidRequest("must be an integer", key)
    # The original turned non-positive values into defaults; callers rely on it.
    return value if value > 0 else default


def parse_pull_request(body, max_images=DEFAULT_MAX_IMAGES, default_auth=None, mirrors=None, mirror_auth=None,
                       allow_request_mirrors=False, allowed_registries=(), runtime=None):
    """Validate a decoded JSON body. Images may be objects or reference strings.

    ``mirrors``/``mirror_auth`` are the operator's (trusted) mirror map and
    mirror credentials; the body's ``mirrors`` overrides the map per registry
    and its ``mirror_auth`` adds credentials per mirror host.
    ``allowed_registries`` bounds the images' registries and the mirrors the
    body names (the operator's own map is checked once, where it is set:
    ``check_mirrors_allowed``). ``runtime``, when given, says what the
    runtime below the seam can do (``can_mirror``, ``check_platform``): what
    it cannot is refused here, before anything is pulled.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object", "body")
    images = body.get("images")
    if images is None:
        raise InvalidRequest("is required", "images")
    if not isinstance(images, list):
        raise InvalidRequest("must be a list", "images")
    if not images:
        raise InvalidRequest("must not be empty", "images")
    if len(images) > max_images:
        raise InvalidRequest("has %d entries; at most %d are allowed" % (len(images), max_images), "images")
    default_auth = _parse_auth(default_auth, "auth_config")
    specs = [_parse_spec(i, item, default_auth) for i, item in enumerate(images)]
    default_platform = parse_platform(body.get("platform"), "platform")
    if default_platform:
        specs = [s if s.platform else s._replace(platform=default_platform) for s in specs]
    if allowed_registries:
        for spec in specs:
            check_registry_allowed(spec.ref.domain, allowed_registries, "images[%d].image" % spec.index)
    if runtime is not None:
        _check_runtime(runtime, body, specs)
    specs = _with_mirrors(specs, body, mirrors or {}, mirror_auth or {}, allow_request_mirrors, allowed_registries)
    concurrency = _parse_count(body, "concurrency", DEFAULT_CONCURRENCY)
    attempts = min(_parse_count(body, "retry", DEFAULT_RETRY), MAX_ATTEMPTS)
    policy = body.get("pull", POLICY_ALWAYS)
    if policy not in PULL_POLICIES:
        raise InvalidRequest("must be one of %s" % ", ".join(PULL_POLICIES), "pull")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("must be true or false", "dry_run")
    return PullRequest(specs, concurrency, attempts, policy, dry_run, _parse_timeout(body.get("timeout")))


def _check_runtime(runtime, body, specs):
    if body.get("mirrors") and not runtime.can_mirror:
        raise InvalidRequest(runtime.without_mirrors, "mirrors")
    if runtime.check_platform is None:
        return
    for spec in specs:
        error = runtime.check_platform(spec.platform) if spec.platform else None
        if error:
            item = body["images"][spec.index]
            own = isinstance(item, dict) and item.get("platform")
            raise InvalidRequest(error, "images[%d].platform" % spec.index if own else "platform")


_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")


def parse_platform(value, field):
    """``linux/arm64``, ``linux/amd64/v2``, ``linux/arm/v7``; None when not given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _PLATFORM_RE.match(value.strip().lower()):
        raise InvalidRequest("must be OS/ARCH[/VARIANT], e.g. linux/arm64 or linux/amd64/v2", field)
    return value.strip().lower()


def check_registry_allowed(registry, patterns, field, what=None):
    """Raise ``RequestForbidden`` unless ``registry`` matches one of ``patterns``
    (``reg.example.com``, ``*.corp.example``, ``docker.io``; shell-style globs)."""
    if not any(fnmatch.fnmatchcase(registry, pattern) for pattern in patterns):
        shown = what or "registry " + registry
        raise RequestForbidden("%s is not allowed here; allowed: %s" % (shown, ", ".join(patterns)), field)


def check_mirrors_allowed(mirror_map, patterns, field):
    """Every host of a mirror map must be admitted by the allow-list as well:
    it bounds every host the daemon is sent to, and a mirror is one."""
    if not patterns:
        return
    for registry, hosts in mirror_map.items():
        for i, host in enumerate(hosts):
            check_registry_allowed(host, patterns, "%s.%s[%d]" % (field, registry, i),
                                   "mirror %s (for %s)" % (host, registry))


def _with_mirrors(specs, body, configured, configured_auth, allow_requested, allowed_registries):
    requested = parse_mirror_map(body.get("mirrors"), "mirrors")
    check_mirrors_allowed(requested, allowed_registries, "mirrors")  # before anything is asked of them
    auth = dict(configured_auth)
    given = body.get("mirror_auth")
    if given is not None:
        if not isinstance(given, dict):
            raise InvalidRequest("must be an object mapping a mirror host to its auth_config", "mirror_auth")
        for host, value in given.items():
            auth[normalize_host(host, "mirror_auth")] = _parse_auth(value, "mirror_auth.%s" % host)
    if not configured and not requested:
        return specs
    return [spec._replace(mirrors=plan(spec.ref.domain, configured, requested, auth, allow_requested, "mirrors"))
            for spec in specs]


def _parse_timeout(value):
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRequest("must be a Go duration such as \"10m\" or a number of seconds", "timeout")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), "timeout")
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidRequest("must be a finite duration", "timeout")
    if seconds <= 0:
        raise InvalidRequest("must be positive", "timeout")
    return seconds
