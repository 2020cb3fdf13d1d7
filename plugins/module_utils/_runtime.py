# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine's runtime seam: what the engine asks of a container runtime.

Above this seam the engine knows no runtime: rows, retries, deadlines, shared
pulls, the server-wide cap, stall detection, cancel and redaction work the
same over every implementation. Below it, one file per transport:
``_runtime_docker.py`` (the Docker API: dockerd, Podman) and
``_runtime_cri.py`` (the Kubernetes CRI: containerd). As in containerd's own
Go client, the seam is narrow; everything a runtime cannot do is said by a
capability, never by the engine asking which runtime it is.

A runtime is shared by every request of a process and must be thread-safe.
Errors: ``DaemonUnavailable`` when the runtime does not answer at all,
``PullFailed`` subclasses (``_errors``) for what a pull ran into.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class Runtime:
    """The interface; implementations override every method."""

    #: ``docker``, ``podman`` or ``containerd``: for ``/debug/dump`` and logs only.
    kind = "runtime"
    #: How messages name it: "stalled: the Docker daemon sent nothing for 2m0s".
    label = "the runtime"
    #: The engine's mirror map applies through this runtime (names rewritten,
    #: pulled from the mirror, tagged back). False where the runtime has its
    #: own mirror mechanism (containerd's ``hosts.toml``).
    can_mirror = False
    #: Why a request's ``mirrors`` is refused where ``can_mirror`` is False.
    without_mirrors = "this runtime applies no mirror map; a request cannot name mirrors"
    #: ``adopt`` works: the runtime can put another name on an image it holds
    #: (a tag on an image pulled by digest). False for the CRI, which names an
    #: image only as it was pulled.
    can_tag = False
    #: Which ``platform`` values a pull may ask for: None for any, else a
    #: function of the platform string that returns an error message or None.
    check_platform = None

    def check(self, timeout=None):
        """Raise ``DaemonUnavailable`` unless the runtime answers within ``timeout``."""
        raise NotImplementedError

    def info(self):
        """``{"engine": kind, "version": ...}`` for ``/debug/dump``; ``{"error": ...}`` when it cannot say."""
        raise NotImplementedError

    def local_images(self, timeout=None):
        """``{reference key: image ID}`` for every tag and digest held (see ``local_key``); ``{}`` when unknown."""
        raise NotImplementedError

    def local_platform(self, ref):
        """``os/arch[/variant]`` of the local image for ``ref``, or None."""
        raise NotImplementedError

    def pull(self, name, tag, auth_config, platform, watch):
        """Pull ``name`` at ``tag`` (a tag or a digest) once; return its digest, or None when unknown.

        ``watch`` is the attempt's watchdog: call ``watch.alive()`` whenever
        the pull makes progress (any sign of life counts; any thread may call
        it), ``watch.emit(kind, detail)`` for ``progress``/``layer`` events
        (from the pull's own thread), ``watch.on_abort(fn)`` with a function
        that makes the pull return at once (it is called from another thread
        when the deadline passes, the pull stalls or nobody waits any more;
        at once if that has already happened), and raise
        ``watch.error(message)`` once ``watch.fired``. ``watch.remaining()``
        is how long the pull may last at most, for a backstop of its own.
        ``watch.memo`` is a dict that lives as long as the shared pull (across
        its retries), for what needs asking only once. ``watch.record(field,
        value)`` adds a field to the image's row (what only this runtime knows).
        """
        raise NotImplementedError

    def origin_digest(self, ref, auth_config, timeout):
        """The digest the origin registry gives for ``ref``'s tag (no layers fetched); mirrors only."""
        raise NotImplementedError

    def adopt(self, ref, pulled_as, digest):
        """Tag what was pulled as ``pulled_as`` with ``ref``'s canonical name (``can_tag``).

        A ``pulled_as`` tag (``mirror/path:tag``) is dropped; a digest
        reference (``site/path@sha256:...``) is kept: it is the runtime's only
        record of the digest the content was verified against."""
        raise NotImplementedError

    def close(self):
        """Release connections; the runtime may be used again afterwards."""


def local_key(ref):
    """How a runtime lists a reference: by digest when pinned, else by tag."""
    return str(ref._replace(tag=None)) if ref.digest else str(ref)


def tag_key(ref, can_tag=True):
    """Where the runtime lists what ``ref``'s name and tag point at now (its digest aside, where it can tag)."""
    return str(ref._replace(digest=None)) if ref.tag and ref.digest and can_tag else local_key(ref)


def held(ref, images, can_tag=True):
    """The ID under which ``images`` (``local_images()``) holds ``ref``, or None.

    A tag pinned to a digest (``name:tag@digest``) is held where the tag names
    content some repository holds at that digest (content is addressed by
    digest, so which repository does not matter); on a runtime that cannot
    tag (``can_tag``), where the image is held at the digest."""
    if not (ref.tag and ref.digest and can_tag):
        return images.get(local_key(ref))
    by_tag = images.get(tag_key(ref))
    suffix = "@" + ref.digest
    if by_tag is not None and any(key.endswith(suffix) and image == by_tag for key, image in images.items()):
        return by_tag
    return None


def socket_url(value, default):
    """A runtime's address as given (a socket path or a URL), as a URL; ``default`` when not given."""
    if not value:
        return default
    if value.startswith("/"):
        return "unix://" + value
    return value
