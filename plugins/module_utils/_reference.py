# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references, checked against Docker's reference grammar.

The grammar is distribution/reference's (``reference.go``); we validate before
contacting the daemon so that a typo is a 400 naming the field, not a retried
pull. Normalisation follows ``normalize.go``: ``busybox`` is
``docker.io/library/busybox``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import namedtuple

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")"
_DOMAIN = _HOST + r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = r"(?:" + _DOMAIN + r"/)?" + _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"

REFERENCE_RE = re.compile(
    r"(?P<name>" + _NAME + r")(?::(?P<tag>" + _TAG + r"))?(?:@(?P<digest>" + _DIGEST + r"))?"
)
TAG_RE = re.compile(_TAG)
DIGEST_RE = re.compile(_DIGEST)
_SHA256_RE = re.compile(r"sha256:[0-9a-f]{64}")


class InvalidReference(ValueError):
    """The text is not a Docker image reference; ``str()`` says why."""


class Reference(namedtuple("Reference", "domain path tag digest")):
    """A parsed reference. ``tag`` and ``digest`` may be ``None``."""

    __slots__ = ()

    @property
    def name(self):
        """The fully qualified repository, e.g. ``docker.io/library/busybox``."""
        return self.domain + "/" + self.path

    @property
    def familiar_name(self):
        """The repository as a user writes it, e.g. ``busybox``."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_REPO_PREFIX):]
            return self.path
        return self.name

    @property
    def pull_tag(self):
        """What to send as the daemon's ``tag`` parameter: the digest wins."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self):
        out = self.name
        if self.tag:
            out += ":" + self.tag
        if self.digest:
            out += "@" + self.digest
        return out


def _split_domain(name):
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (not any(c in first for c in ".:[") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text):
    """Parse and normalise ``text``; raise ``InvalidReference`` with the reason."""
    if not isinstance(text, str):
        raise InvalidReference("must be a string")
    if not text:
        raise InvalidReference("must not be empty")
    m = REFERENCE_RE.fullmatch(text)
    if not m:
        if text.lower() != text and REFERENCE_RE.fullmatch(text.lower()):
            raise InvalidReference("repository name must be lowercase: %r" % text)
        raise InvalidReference("invalid reference format: %r" % text)
    name = m.group("name")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference("repository name must not be longer than %d characters" % NAME_TOTAL_LENGTH_MAX)
    digest = m.group("digest")
    if digest and digest.startswith("sha256:") and not _SHA256_RE.fullmatch(digest):
        raise InvalidReference("invalid sha256 digest (want 64 lowercase hex digits): %r" % text)
    domain, path = _split_domain(name)
    return Reference(domain, path, m.group("tag"), digest)


def resolve(image, tag=None):
    """Combine the API's ``image`` and ``tag`` fields into one Reference.

    Returns ``(reference, field)`` on success; raises ``InvalidReference`` with
    ``.field`` set to ``"image"`` or ``"tag"`` naming the culprit.
    """
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        exc.field = "image"
        raise
    if tag is None or tag == "":
        if not ref.tag and not ref.digest:
            ref = ref._replace(tag=DEFAULT_TAG)
        return ref
    err = None
    if not isinstance(tag, str):
        err = "must be a string"
    elif DIGEST_RE.fullmatch(tag):
        if ref.digest and ref.digest != tag:
            err = "digest %r differs from the one in image %r" % (tag, image)
        elif not _SHA256_RE.fullmatch(tag) and tag.startswith("sha256:"):
            err = "invalid sha256 digest: %r" % tag
        else:
            return ref._replace(digest=tag)
    elif not TAG_RE.fullmatch(tag):
        err = "invalid tag format: %r" % tag
    elif ref.digest:
        err = "image %r already pins a digest; omit tag" % image
    elif ref.tag and ref.tag != tag:
        err = "tag %r differs from the tag in image %r" % (tag, image)
    if err:
        exc = InvalidReference(err)
        exc.field = "tag"
        raise exc
    return ref._replace(tag=tag)
