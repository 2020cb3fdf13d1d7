# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The runtime seam over the Kubernetes CRI: a node's containerd (``_runtime``).

A pull is one ``PullImage`` call, under a gRPC deadline, cancelled by the
attempt's watchdog. ``PullImage`` reports nothing until it returns, so its
progress and signs of life come from containerd's downloads
(``_cri_ingests``), attributed to a pull by the blobs of its manifest, which
the registry gives (``_registry``) once per shared pull (``watch.memo``), in
a thread of its own so that the pull never waits for it; a manifest that
cannot be had costs the per-layer progress, never the pull.

What the CRI does not do, this runtime says by its capabilities: no mirror
map (containerd's ``hosts.toml`` mirrors apply on the node, under the
origin's name), and only the node's platform.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading

from ._cri_api import CriClient, PullCancelled
from ._cri_ingests import IngestPoller, PullTracker
from ._errors import (DaemonUnavailable, DeadlineExceeded, InvalidRequest, PermanentPullError, PullerError,
                      TransientPullError)
from ._redact import redact, secrets_of
from ._reference import InvalidReference, parse_reference, resolve
from ._platforms import parse_platform
from ._registry import RegistryClient
from ._runtime import Runtime

log = logging.getLogger("puller.engine")

DEFAULT_TIMEOUT = 10.0
DEFAULT_POLL_INTERVAL = 0.5
# PullImage's own gRPC deadline when the watch says nothing of its deadline: a
# backstop for a watchdog that failed, not a limit a pull should reach.
DEFAULT_PULL_BACKSTOP = 24 * 3600.0
PULL_GRACE = 5.0  # the backstop is this much after the watch's deadline
MEMO_KEY = "cri.manifest"


class CriRuntime(Runtime):
    """``Runtime`` over the CRI image service at ``endpoint``.

    ``timeout`` bounds every call but pulls; ``poll_interval`` is how often
    the downloads are looked at while pulls run; ``insecure_registries``
    (hosts, ``host:port``) may be asked for manifests in plain HTTP, as
    loopback registries always may; ``registry_timeout`` bounds the manifest
    exchange with a registry.
    """

    kind = "containerd"
    label = "containerd"
    can_mirror = False
    without_mirrors = ("containerd pulls through the node's own mirrors (hosts.toml, written by the role "
                       "bbklab.puller.cri_mirrors); a request cannot name mirrors")

    def __init__(self, endpoint=None, timeout=DEFAULT_TIMEOUT, poll_interval=DEFAULT_POLL_INTERVAL,
                 insecure_registries=(), registry_timeout=DEFAULT_TIMEOUT, pull_backstop=DEFAULT_PULL_BACKSTOP):
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.pull_backstop = float(pull_backstop)
        self.registry = RegistryClient(registry_timeout, insecure_registries)
        self._lock = threading.Lock()
        self._client = None
        self._kind = "containerd"
        self._node_platform = None
        self._client_or_raise()  # no grpcio: DaemonUnavailable naming it, now rather than at the first pull
        self.poller = IngestPoller(self._client_or_raise, self.poll_interval, max(2.0, 4 * self.poll_interval))

    @property
    def kind(self):
        return self._kind

    def _client_or_raise(self):
        with self._lock:
            if self._client is None:
                self._client = CriClient(self.endpoint, self.timeout)
            return self._client

    # -- the runtime ------------------------------------------------------------------
    def check(self, timeout=None):
        try:
            version = self._client_or_raise().version(timeout=timeout)
        except DaemonUnavailable:
            raise
        except PullerError as exc:
            raise DaemonUnavailable("CRI runtime at %s: %s" % (self._client_or_raise().endpoint, exc))
        self._kind = (version["runtime_name"] or "containerd").lower()
        return version

    def info(self):
        try:
            version = self.check(self.timeout)
        except PullerError as exc:
            return {"error": str(exc)}
        return {"engine": self._kind, "version": version["runtime_version"],
                "api_version": version["runtime_api_version"]}

    def node_platform(self):
        """The platform the node pulls for (asked once)."""
        if self._node_platform is None:
            self._node_platform = self._client_or_raise().node_platform()
        return self._node_platform

    def check_platform(self, platform):
        """An error message unless ``platform`` is the node's: the CRI pulls no other."""
        return platform_error(platform, self.node_platform())

    def local_images(self, timeout=None):
        try:
            images = self._client_or_raise().list_images(timeout=timeout)
        except PullerError as exc:
            log.info("listing the images of the CRI runtime failed: %s", exc)
            return {}
        found = {}
        for image in images:
            for name in list(image["repo_tags"]) + list(image["repo_digests"]):
                try:
                    found[str(parse_reference(name))] = image["id"]
                except InvalidReference:
                    continue  # not a name Docker would read; nobody can ask for it
        return found

    def local_platform(self, ref):
        try:
            present = self._client_or_raise().image_status(str(ref))
        except PullerError:
            return None
        if present is None:
            return None
        # The CRI pulls only the node's platform. Its default variant is made
        # explicit (``linux/arm64/v8``), so that both spellings of a wanted
        # platform match it; amd64's is never written.
        node = parse_platform(self.node_platform())
        return str(node._replace(variant="")) if node.arch == "amd64" and node.variant == "v1" else str(node)

    def pull(self, name, tag, auth_config, platform, watch):
        # ``platform`` was checked (check_platform): the CRI pulls the node's.
        ref_text = name + ("@" + tag if ":" in tag else ":" + tag)  # a tag has no ':', a digest has
        timeout_message = "timeout: pull of %s exceeded the deadline" % ref_text
        if watch.fired:
            raise watch.error(timeout_message)
        remaining = getattr(watch, "remaining", None)
        backstop = remaining() + PULL_GRACE if callable(remaining) else self.pull_backstop
        try:
            handle = self._client_or_raise().pull(ref_text, auth=auth_config or None, timeout=backstop)
        except InvalidRequest as exc:
            raise PermanentPullError("%s: %s" % (ref_text, exc.message))
        tracker = PullTracker(watch)
        watch.on_abort(handle.cancel)
        if watch.fired:  # fired before the abort function was known
            handle.cancel()
        handle.add_done_callback(tracker.end)
        self.poller.add(tracker)
        # A pull by digest asks puller's registry client nothing: containerd fetches it through the
        # node's own mirrors (hosts.toml, a preheated site), and the origin may be out of reach.
        fetch = _NO_MANIFEST if ":" in tag else self._manifest_fetch(watch.memo, ref_text, auth_config)
        fetch.subscribe(tracker.know)
        pulled = False
        try:
            ended = False
            while not ended:  # events are sent from this thread, as a Docker pull's are
                events, ended = tracker.take(1.0)
                for kind, detail in events:
                    watch.emit(kind, detail)
            _result(handle, watch, timeout_message, secrets_of(auth_config))
            pulled = True
        finally:
            self.poller.remove(tracker)
            fetch.unsubscribe(tracker.know)
            for kind, detail in tracker.finish(pulled):
                watch.emit(kind, detail)
        if watch.fired:
            raise watch.error(timeout_message)
        return self._digest(ref_text, name, tag)

    def _digest(self, ref_text, name, tag):
        """The pulled image's digest from its repo digests (the pinned one when pinned)."""
        if ":" in tag:
            return tag
        try:
            status = self._client_or_raise().image_status(ref_text)
        except PullerError:
            return None
        for entry in (status or {}).get("repo_digests") or ():
            repo, _sep, digest = entry.partition("@")
            if repo == name:
                return digest
        return None

    def _manifest_fetch(self, memo, ref_text, auth_config):
        fetch = memo.get(MEMO_KEY) if memo is not None else None
        if fetch is None:
            fetch = _ManifestFetch(self.registry, ref_text, self.node_platform(), auth_config)
            if memo is not None:
                memo[MEMO_KEY] = fetch
            fetch.start()
        return fetch

    def origin_digest(self, ref, auth_config, timeout):
        return self.registry.digest(ref, auth_config, timeout)

    def adopt(self, ref, pulled_as, digest):
        # Never called: can_mirror is False. A CRI pull keeps the origin's name
        # (containerd's hosts.toml mirrors serve it), so there is nothing to adopt.
        raise PermanentPullError("the CRI runtime pulls under the origin's name only; %s cannot be adopted as %s"
                                 % (pulled_as, ref))

    def close(self):
        self.poller.stop()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _result(handle, watch, timeout_message, secrets):
    """The ended ``PullImage``'s image ID, or the attempt's error."""
    try:
        return handle.result()
    except PullCancelled:
        if watch.fired:
            raise watch.error(timeout_message)
        raise TransientPullError("cancelled: the pull of %s was aborted" % handle.ref)
    except (DeadlineExceeded, DaemonUnavailable) as exc:
        if watch.fired:
            raise watch.error(timeout_message)
        if isinstance(exc, DeadlineExceeded):
            raise
        # The runtime went away mid-pull (a restart): the next attempt may find it back.
        raise TransientPullError(redact("the CRI runtime became unavailable during the pull: %s" % exc, secrets))


def platform_error(wanted, node):
    """Why ``wanted`` cannot be pulled on a node of platform ``node``, or None.

    The same platform however written: ``linux/arm64`` is ``linux/arm64/v8``,
    ``linux/x86_64`` is ``linux/amd64``; another variant is another platform.
    """
    if parse_platform(wanted) == parse_platform(node):
        return None
    return ("the node's runtime pulls only for its own platform, %s; %s is another (pull it on a node of "
            "that platform)" % (node, wanted))


class _NoManifest:
    """No manifest asked: the downloads are followed without knowing the image's layers."""

    @staticmethod
    def subscribe(fn):
        fn(None)

    @staticmethod
    def unsubscribe(fn):
        pass


_NO_MANIFEST = _NoManifest()


class _ManifestFetch:
    """The image's manifest, asked of the registry once per shared pull, in a thread of its own."""

    def __init__(self, registry, ref_text, platform, auth_config):
        self._registry = registry
        self._ref = ref_text
        self._platform = platform
        self._auth = dict(auth_config or {})
        self._lock = threading.Lock()
        self._listeners = []
        self.done = False
        self.manifest = None
        self.error = None

    def start(self):
        thread = threading.Thread(target=self._run, name="cri-manifest")
        thread.daemon = True
        thread.start()

    def _run(self):
        try:
            manifest = self._registry.manifest(resolve(self._ref), self._platform, self._auth)
        except Exception as exc:  # pylint: disable=broad-except  # never fails the pull
            manifest, error = None, redact(str(exc), secrets_of(self._auth))
            log.info("pull %s: no manifest from the registry (%s); no per-layer progress", self._ref, error)
        else:
            error = None
        with self._lock:
            self.done, self.manifest, self.error = True, manifest, error
            listeners = list(self._listeners)
        for fn in listeners:
            fn(manifest)

    def subscribe(self, fn):
        with self._lock:
            if not self.done:
                self._listeners.append(fn)
                return
        fn(self.manifest)

    def unsubscribe(self, fn):
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)
