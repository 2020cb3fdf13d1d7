# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A preheat below the runtime seam: copy a release into a *site* registry once.

A "pull" of ``name:tag`` is ``skopeo copy --all --preserve-digests`` (run by
``_skopeo``) from the origin to the same path under the site: manifest
bytes and digests unchanged, an index with every platform it lists, blobs
the site already has skipped. Hosts then pull from the site by digest. The
engine's rules hold as for any runtime: retries by error class, deadlines,
stall detection, cancel, shared flights and rows.

The row gains ``site``, ``bytes_copied`` and ``blobs_skipped``: the sizes of
the blobs skopeo says it uploaded (its debug line per upload), as the site's
own manifests give them once the copy is there (the origin is never asked
for a manifest by this runtime: skopeo asks it once per image, once per
image of an index), and the count of the other blobs of those manifests,
which the site had already (or mounted from another of its repositories).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import logging
import os
import re
import shutil
import subprocess
import threading

from ._errors import DaemonUnavailable, PermanentPullError, PullerError
from ._mirrors import normalize_host
from ._redact import secrets_of
from ._reference import parse_reference
from ._registry import RegistryClient, plain_http_allowed
from ._runtime import Runtime
from ._skopeo import Workspace, copy_command, run_copy, tls_verify

log = logging.getLogger("puller.engine")

DEFAULT_TIMEOUT = 10.0
# skopeo's own --command-timeout ends a copy whose caller died; a flight's
# deadline may move later while it runs, so this is well past the first one.
COMMAND_TIMEOUT_FACTOR, COMMAND_TIMEOUT_MARGIN = 2.0, 60.0


class SiteRuntime(Runtime):
    """``Runtime`` whose pulls copy images into the registry at ``site`` (``HOST[:PORT]``).

    ``site_auth`` (an ``auth_config``) is what skopeo gives the site;
    ``insecure_registries`` (hosts, ``host:port``), as dockerd's
    ``--insecure-registry``, may be spoken to in plain HTTP, as loopback
    registries always may; ``skopeo`` is the program (a name in ``PATH`` or a
    path); ``timeout`` bounds every exchange but copies.
    """

    kind = "skopeo"
    label = "the copy to the site"  # an instance names its site
    can_mirror = False
    without_mirrors = "a preheat copies from the registry each image names; a request cannot name mirrors"
    can_tag = False
    without_mirrors = "a preheat copies from the origin itself; it takes no mirrors"

    def __init__(self, site, *, site_auth=None, insecure_registries=(), skopeo="skopeo", timeout=DEFAULT_TIMEOUT):
        self.site = normalize_host(site, "site")
        self.label = "the copy to %s" % self.site
        self.site_auth = dict(site_auth or {})
        self.insecure_registries = tuple(insecure_registries or ())
        self.skopeo = skopeo
        self.timeout = float(timeout)
        self.registry = RegistryClient(self.timeout, self.insecure_registries)
        self._lock = threading.Lock()
        self._version = None

    @staticmethod
    def check_platform(platform):
        """Always an error: a preheat copies every platform of the image."""
        return "a preheat copies every platform of the image; it cannot copy %s alone" % platform

    # -- the runtime --------------------------------------------------------------------
    def executable(self):
        """skopeo's path, or None when it is not installed."""
        if os.path.dirname(self.skopeo):
            return self.skopeo if os.access(self.skopeo, os.X_OK) and os.path.isfile(self.skopeo) else None
        return shutil.which(self.skopeo)

    def check(self, timeout=None):
        if self.executable() is None:
            raise DaemonUnavailable("%s is not installed or not in PATH: it copies images to the site registry %s"
                                    % (self.skopeo, self.site))
        scheme = "http" if plain_http_allowed(self.site, self.insecure_registries) else "https"
        try:
            resp = self.registry.request("GET", "%s://%s/v2/" % (scheme, self.site), {},
                                         self.timeout if timeout is None else timeout)
        except (OSError, http.client.HTTPException, PullerError) as exc:
            raise DaemonUnavailable("the site registry %s does not answer: %s" % (self.site, exc))
        if resp.status not in (200, 401):
            raise DaemonUnavailable("the site registry %s answered /v2/ with status %d" % (self.site, resp.status))

    def info(self):
        try:
            self.check()
            version = self.version()
        except PullerError as exc:
            return {"error": str(exc)}
        return {"engine": "skopeo", "version": version, "site": self.site}

    def version(self):
        """``1.9.3`` (``skopeo --version``, asked once), or None when it does not say."""
        with self._lock:
            if self._version is None:
                try:
                    answer = subprocess.run([self.executable() or self.skopeo, "--version"], capture_output=True,
                                            timeout=self.timeout, check=False, stdin=subprocess.DEVNULL)
                    found = re.search(r"version\s+(\S+)", answer.stdout.decode("utf-8", "replace"))
                    self._version = found.group(1) if found else ""
                except (OSError, subprocess.SubprocessError) as exc:
                    raise DaemonUnavailable("%s cannot run: %s" % (self.skopeo, exc))
            return self._version or None

    def local_images(self, timeout=None):
        return {}  # the site's content is not the host's: every preheat copies (what is there is skipped)

    def local_platform(self, ref):
        return None

    def pull(self, name, tag, auth_config, platform, watch):
        ref = parse_reference(name)
        sep = "@" if ":" in tag else ":"  # a digest has a colon, a tag has none
        source, dest = name + sep + tag, "%s/%s%s%s" % (self.site, ref.path, sep, tag)
        timeout_message = "timeout: the copy of %s to %s exceeded the deadline" % (source, self.site)
        if watch.fired:
            raise watch.error(timeout_message)
        program = self.executable()
        if program is None:
            raise PermanentPullError("%s is not installed or not in PATH" % self.skopeo)
        watch.record("site", self.site)
        remaining = watch.remaining() if callable(getattr(watch, "remaining", None)) else None
        secrets = secrets_of(auth_config) + secrets_of(self.site_auth)
        with Workspace(ref.domain, auth_config, self.site, self.site_auth) as workspace:
            argv = copy_command(
                program, source, dest, workspace, tls_verify(ref.domain, self.insecure_registries),
                tls_verify(self.site, self.insecure_registries),
                remaining * COMMAND_TIMEOUT_FACTOR + COMMAND_TIMEOUT_MARGIN if remaining is not None else None)
            output, returncode = run_copy(argv, workspace.env(), watch, timeout_message)
            digest = workspace.digest()
        if returncode != 0:
            raise output.failure(returncode, secrets, names=(source, dest, name, ref.path))
        for kind, detail in output.finish():
            watch.emit(kind, detail)
        digest = digest or (tag if sep == "@" else None)
        self._count(watch, "%s/%s@%s" % (self.site, ref.path, digest) if digest else dest, output.uploaded)
        return digest

    def _count(self, watch, at_site, uploaded):
        """``bytes_copied`` and ``blobs_skipped`` from the site's manifests of what was copied."""
        try:
            manifests = self.registry.manifests(at_site, self.site_auth, self.timeout)
        except PullerError as exc:
            log.info("preheat %s: the site's manifests cannot be had (%s); no bytes_copied", at_site, exc)
            return
        sizes = {}
        for _digest, document in manifests:
            for blob in [document.get("config")] + list(document.get("layers") or ()):
                if isinstance(blob, dict) and isinstance(blob.get("size"), int):
                    sizes[blob.get("digest")] = blob["size"]
        sent = set(sizes) & uploaded
        watch.record("bytes_copied", sum(sizes[digest] for digest in sent))
        watch.record("blobs_skipped", len(sizes) - len(sent))

    def origin_digest(self, ref, auth_config, timeout):
        raise NotImplementedError("a preheat has no mirrors (can_mirror is False)")

    def adopt(self, ref, pulled_as, digest):
        raise NotImplementedError("a preheat has no mirrors (can_mirror is False)")
