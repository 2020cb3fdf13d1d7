# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references, parsed as Docker parses them.

The grammar and the normalisation are those of distribution/reference 2.8
(``reference.go``, ``normalize.go``: ``ParseNormalizedNamed``), the package
dockerd 20.10 reads image names with; ``tests/integration/test_reference_docker.py``
compares this module with that package, input by input. We validate before
contacting the daemon so that a typo is a 400 naming the field, not a retried
pull. ``busybox`` is ``docker.io/library/busybox``.

What 2.8 does that surprises, and this module does too:

- a digest's algorithm is one the daemon can verify: ``sha256``, ``sha384``
  or ``sha512``, in lower case, with exactly 64, 96 or 128 lower-case hex digits;
- a tag is ASCII: Go's ``\\w`` is ``[A-Za-z0-9_]``;
- a whole reference of 64 hex digits is refused (it would read as an image ID);
- the 255-character limit counts the normalised name, ``docker.io/library/`` included;
- the first component is a registry host when it contains ``.`` or ``:`` or is
  ``localhost``; when it then is not a host (``r_e.example.io/app``: a host has
  no ``_``) the whole name is a path on no registry (``domain`` is ``""``).
  The daemon cannot pull such a name, so ``resolve`` refuses it.

Two deliberate differences, both from newer releases of the package
(github.com/distribution/reference v0.5.0 and later), both for names that 2.8
refuses outright (it never reads them another way):

- an IPv6 literal host, ``[`` hex digits and colons ``]`` with an optional
  port: ``[::1]:5000/app``;
- a first component followed by ``/`` that has an upper-case letter, no ``.``
  or ``:``, is a registry host: ``LOCALHOST/app``, ``Registry/app`` (2.8 takes
  it for a Docker Hub path and refuses it as not lower case).
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
DIGEST_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}  # go-digest's, with their hex lengths

# Go's regexp is RE2 (no backtracking); Python's re backtracks. The patterns are
# 2.8's, written so that no input makes them backtrack badly: 2.8's separator
# ``[-]*`` is written ``-+`` (the same names: an empty separator joins two runs
# of alphanumerics into one run).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[[a-fA-F0-9:]+\]"  # newer releases only (see above)
_DOMAIN = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w; Python's \w would take any Unicode letter
_DIGEST_FORMAT = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
_NAME = r"(?:" + _DOMAIN + r"/)?" + _REMOTE_NAME

REFERENCE_RE = re.compile(
    r"(?P<name>" + _NAME + r")(?::(?P<tag>" + _TAG + r"))?(?:@(?P<digest>" + _DIGEST_FORMAT + r"))?"
)
NAME_RE = re.compile(r"(?:(?P<domain>" + _DOMAIN + r")/)?(?P<path>" + _REMOTE_NAME + r")")
TAG_RE = re.compile(_TAG)
DIGEST_FORMAT_RE = re.compile(_DIGEST_FORMAT)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_HEX_RE = re.compile(r"[a-f0-9]+")


class InvalidReference(ValueError):
    """The text is not a Docker image reference; ``str()`` says why."""


class Reference(namedtuple("Reference", "domain path tag digest")):
    """A parsed reference. ``tag`` and ``digest`` may be ``None``; ``domain``
    is ``""`` when Docker reads the whole name as a path (see above)."""

    __slots__ = ()

    @property
    def name(self):
        """The fully qualified repository, e.g. ``docker.io/library/busybox``."""
        return self.domain + "/" + self.path if self.domain else self.path

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


def digest_error(text):
    """Why dockerd (go-digest) refuses ``text`` as a digest, or ``None``."""
    algorithm, sep, hexits = text.partition(":")
    want = DIGEST_ALGORITHMS.get(algorithm)
    if sep and want is not None:
        if len(hexits) == want and _HEX_RE.fullmatch(hexits):
            return None
        return "invalid %s digest (want %d lower-case hex digits): %r" % (algorithm, want, text)
    if not sep or not DIGEST_FORMAT_RE.fullmatch(text):
        return "invalid digest format: %r" % text
    return "unsupported digest algorithm %r (want one of %s, in lower case)" % (
        algorithm, ", ".join(sorted(DIGEST_ALGORITHMS)))


def _split_domain(text):
    """``normalize.go``'s splitDockerDomain, with the newer upper-case rule."""
    i = text.find("/")
    first = text[:i]
    if i < 0:
        domain, remainder = DEFAULT_DOMAIN, text
    elif any(c in first for c in ".:") or first == "localhost":
        domain, remainder = first, text[i + 1:]
    elif first.lower() != first:  # deliberate (see above): 2.8 refuses these
        domain, remainder = first, text[i + 1:]
    else:
        domain, remainder = DEFAULT_DOMAIN, text
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(text):
    """Parse and normalise ``text`` as ParseNormalizedNamed does; raise
    ``InvalidReference`` with the reason."""
    if not isinstance(text, str):
        raise InvalidReference("must be a string")
    if not text:
        raise InvalidReference("must not be empty")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReference("invalid repository name %r: it cannot be 64 hexadecimal digits (an image ID)" % text)
    domain, remainder = _split_domain(text)
    # 2.8 looks at everything before the first ':', which may be a digest's
    # algorithm: refused there too, by the digest rules, with their reason.
    remote = remainder.split(":", 1)[0].split("@", 1)[0]
    if remote.lower() != remote:
        raise InvalidReference("repository name must be lowercase: %r" % text)
    full = domain + "/" + remainder
    m = REFERENCE_RE.fullmatch(full)
    if not m:
        raise InvalidReference("invalid reference format: %r" % text)
    name = m.group("name")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference("repository name must not be longer than %d characters once normalised; %s... has %d"
                               % (NAME_TOTAL_LENGTH_MAX, name[:40], len(name)))
    digest = m.group("digest")
    if digest is not None:
        err = digest_error(digest)
        if err:
            raise InvalidReference("%s in %r" % (err, text))
    parts = NAME_RE.fullmatch(name)  # as 2.8: the name again, for its host
    return Reference(parts.group("domain") or "", parts.group("path"), m.group("tag"), digest)


def _pullable(ref, image):
    if not ref.domain:
        return ("Docker reads %r as a path on no registry (%r is not a registry host: a host has letters, "
                "digits, '-' and '.' only) and cannot pull it" % (image, ref.path.split("/", 1)[0]))
    return None


def resolve(image, tag=None):
    """Combine the API's ``image`` and ``tag`` fields into one Reference.

    The ``tag`` field may carry a digest, under dockerd's digest rules. Raises
    ``InvalidReference`` with ``.field`` set to ``"image"`` or ``"tag"``
    naming the culprit.
    """
    try:
        ref = parse_reference(image)
        err = _pullable(ref, image)
        if err:
            raise InvalidReference(err)
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
    elif ":" in tag:  # not a tag (no tag has one): a digest, or nothing
        err = digest_error(tag)
        if err is None and ref.digest and ref.digest != tag:
            err = "digest %r differs from the one in image %r" % (tag, image)
        if err is None:
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
