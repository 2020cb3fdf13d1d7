"""What the preheat tests share: a site registry (the ``site`` fixture), a proxy that counts and
slows, the engine with a site runtime, raw manifests, and the skopeo processes running."""

import hashlib
import json
import os
import threading
import time

import pytest
import requests

from faultproxy import FaultProxy
from mirrors import Registry
from puller.core._engine import Engine, EngineConfig
from puller.core._registry import ACCEPT
from puller.core._request import parse_pull_request
from puller.core._runtime_site import SiteRuntime
from test_cri_client import _Throttled


@pytest.fixture
def site(tmp_path):
    """A plain registry, empty: the site a preheat fills."""
    registry = Registry(tmp_path)
    yield registry
    registry.stop()


class Proxy(FaultProxy):
    """The fault proxy, forwarding every header as sent (skopeo sends one Accept per
    manifest type); with ``rate``, blobs go at that many bytes a second per
    connection, and a client that went away is noted (``closed``)."""

    def __init__(self, upstream_port, rate=None):
        super().__init__(upstream_port, preserve_headers=True)
        self.rate, self.closed = rate, []

    def _forward(self, h, body, hang=0.0):
        if self.rate and "/blobs/" in h.path:
            h.wfile = _Throttled(h.wfile, self.rate)
        try:
            return super()._forward(h, body, hang)
        except (BrokenPipeError, ConnectionResetError):
            self.closed.append(time.monotonic())
            raise

    def manifest_count(self):
        return len(self.manifest_requests)


def engine_for(site, **config):
    return Engine(EngineConfig(**dict({"backoff_base": 0.05}, **config)), runtime=SiteRuntime(site.address))


def preheat(engine, *images, on_event=None, **body):
    return engine.pull(parse_pull_request(dict(body, images=list(images))), on_event=on_event)


def raw(registry, path, reference, auth=None):
    """The manifest bytes a registry serves, and its digest header."""
    resp = requests.get("http://%s/v2/%s/manifests/%s" % (registry, path, reference), headers={"Accept": ACCEPT},
                        auth=auth, timeout=10)
    resp.raise_for_status()
    assert resp.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(resp.content).hexdigest()
    return resp.content


def tree(registry, path, reference, auth=None):
    """``[(digest, bytes)]``: the manifest at ``reference`` and, for an index, each of its manifests."""
    body = raw(registry, path, reference, auth)
    found = [("sha256:" + hashlib.sha256(body).hexdigest(), body)]
    for entry in json.loads(body).get("manifests") or ():
        found.append((entry["digest"], raw(registry, path, entry["digest"], auth)))
    return found


def blob_sizes(manifests):
    sizes = {}
    for _digest, body in manifests:
        document = json.loads(body)
        for blob in [document.get("config")] + document.get("layers", []):
            if blob:
                sizes[blob["digest"]] = blob["size"]
    return sizes


def skopeo_pids(marker):
    """Processes of skopeo whose command line names ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                argv = fh.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if argv and argv[0].endswith(b"skopeo") and any(marker.encode() in arg for arg in argv):
            found.append(int(entry))
    return found


def wait_until(predicate, timeout, what):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting for " + what
        time.sleep(0.02)


def in_thread(fn, *args, **kwargs):
    result = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except  # the test reads it
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result
