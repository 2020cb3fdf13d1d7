"""The preheat copy (``SiteRuntime``: skopeo below the engine's seam) against real registries.

Origins are the test ground's registries (the open one, the htpasswd one, a
Bearer token one), each behind a counting proxy; the site is a
``docker-registry`` of each test's own. Everything is driven as the server
drives it: ``Engine(EngineConfig(...), runtime=SiteRuntime(...)).pull(...)``.
"""

import base64
import glob
import hashlib
import json
import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import test_registry_client
from conftest import LEAKS, fixture_set, report
from faultproxy import Rules
from preheatkit import site  # noqa: F401  pylint: disable=unused-import  # the fixture
from preheatkit import Proxy, blob_sizes, engine_for, in_thread, preheat, raw, skopeo_pids, tree, wait_until
from puller.core._engine import Engine, EngineConfig
from puller.core._errors import DaemonUnavailable
from puller.core._request import parse_pull_request
from puller.core._runtime_site import SiteRuntime
from test_registry_client import INDEX_REPO, REFRESH, TOKEN_PASSWORD, TOKEN_USER

index_image, tokens, tokened = test_registry_client.index_image, test_registry_client.tokens, test_registry_client.tokened

BIG = "crirt-big"  # the CRI runtime tests' set: two images of two 4 MiB layers (random data)
WRONG_PASSWORD = "Wr0ng-Preheat-Pa55word"
LEAKS.secrets.add(WRONG_PASSWORD)
BLOBS = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")


@pytest.fixture
def origin(ground):
    proxy = Proxy(ground.registry_port)
    yield proxy
    proxy.close()


@pytest.fixture
def auth_origin(ground):
    proxy = Proxy(int(ground.env["PULLER_TEST_AUTH_REGISTRY_PORT"]))
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def big(ground):
    return fixture_set(ground, BIG, 2, 2, 4096)


# -- (1) byte for byte ------------------------------------------------------------------
def test_index_and_private_image_are_copied_byte_for_byte(ground, site, origin, auth_origin, index_image):
    index_digest, _by_platform = index_image
    creds = {"username": ground.user, "password": ground.password}
    engine = engine_for(site)
    result = preheat(engine, "%s/%s:latest" % (origin.address, INDEX_REPO),
                     {"image": auth_origin.address + "/private/img-01", "auth_config": creds})
    assert not result.failure, result.failure
    multi, private = result.success
    assert multi["digest"] == index_digest and multi["site"] == site.address and multi["status"] == "pulled"
    origin_tree, site_tree = tree(ground.registry, INDEX_REPO, "latest"), tree(site.address, INDEX_REPO, "latest")
    assert len(origin_tree) == 4 and origin_tree == site_tree  # the index and its three entries, same bytes
    assert json.loads(site_tree[0][1])["mediaType"] == "application/vnd.oci.image.index.v1+json"
    auth = (ground.user, ground.password)
    assert raw(site.address, "private/img-01", "latest") == raw(ground.auth_registry, "private/img-01", "latest",
                                                                auth)
    assert private["digest"] == "sha256:" + hashlib.sha256(raw(site.address, "private/img-01", "latest")).hexdigest()
    # The site was empty: each blob of the two was sent once, by one of them (a copy that finds a blob
    # of the other there skips it, or mounts it from the other's repository).
    sizes = [blob_sizes(tree(site.address, path, "latest")) for path in (INDEX_REPO, "private/img-01")]
    union = dict(sizes[0], **sizes[1])
    for row, mine in zip((multi, private), sizes):
        assert 0 <= row["bytes_copied"] <= sum(mine.values()) and 0 <= row["blobs_skipped"] <= len(mine), row
    assert sum(union.values()) <= multi["bytes_copied"] + private["bytes_copied"] <= sum(map(sum, (
        s.values() for s in sizes)))
    # the hosts pull it by digest from the site
    assert raw(site.address, INDEX_REPO, index_digest) == origin_tree[0][1]


# -- (2) and (3) a second preheat, and what the origin was asked --------------------------
def test_second_preheat_copies_no_layer_and_origin_is_asked_once_per_manifest(ground, site, origin, index_image):
    engine = engine_for(site)
    image = "%s/%s:latest" % (origin.address, INDEX_REPO)
    origin_tree = tree(ground.registry, INDEX_REPO, "latest")
    entries = len(origin_tree) - 1
    sizes = blob_sizes(origin_tree)
    configs = sum(json.loads(body)["config"]["size"] for _digest, body in origin_tree[1:])

    first = preheat(engine, image).success[0]
    first_bytes, first_manifests = origin.bytes_out, origin.manifest_requests
    assert first["bytes_copied"] == sum(sizes.values())
    assert first_bytes >= first["bytes_copied"]
    # at most each config again, for an entry whose layers were there already
    assert first_bytes - first["bytes_copied"] <= configs
    assert len(first_manifests) <= 1 + entries and all(m == "GET" for m, _path in first_manifests), first_manifests

    origin.reset_stats()
    second = preheat(engine, image).success[0]
    assert second["digest"] == first["digest"]
    assert second["bytes_copied"] == 0 and second["blobs_skipped"] == len(sizes), second
    # at the origin: no layer byte, only the configs skopeo reads to check them
    assert origin.bytes_out <= configs, origin.bytes_out
    assert origin.manifest_count() <= 1 + entries, origin.manifest_requests
    report(ground, "preheat: index of %d entries, %d blobs: first copy %d bytes to the site (%d from the origin), "
                   "again %d (%d from the origin, configs); origin manifest requests %d then %d"
           % (entries, len(sizes), first["bytes_copied"], first_bytes, second["bytes_copied"], origin.bytes_out,
              len(first_manifests), origin.manifest_count()))


def test_single_image_costs_one_origin_manifest_request(ground, site, origin):
    result = preheat(engine_for(site), origin.address + "/fixture/img-05:latest")
    assert not result.failure, result.failure
    assert [m for m, _path in origin.manifest_requests] == ["GET"]


# -- (4) the password is nowhere ------------------------------------------------------------
def test_origin_password_on_no_command_line_row_or_log(ground, site, caplog, tmp_path, monkeypatch):
    slow = Proxy(int(ground.env["PULLER_TEST_AUTH_REGISTRY_PORT"]), rate=64 << 10)  # a copy lasts seconds
    secrets = [ground.password, base64.b64encode(("%s:%s" % (ground.user, ground.password)).encode()).decode()]
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the copies' private directories, only
    workspaces = str(tmp_path / "tmp" / "puller-skopeo-*")
    seen = {"cmdlines": 0, "environs": 0, "leaks": [], "workspaces": []}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            for pid in skopeo_pids(site.address):
                for name in ("cmdline", "environ"):
                    try:
                        with open("/proc/%d/%s" % (pid, name), "rb") as fh:
                            text = fh.read().decode("utf-8", "replace")
                    except OSError:
                        continue
                    seen[name + "s"] += 1
                    seen["leaks"] += [name for s in secrets if s in text]
            for path in glob.glob(workspaces):
                try:
                    modes = [stat.S_IMODE(os.stat(path).st_mode)] + [
                        stat.S_IMODE(os.stat(os.path.join(path, f)).st_mode) for f in os.listdir(path)
                        if f.endswith(".json")]
                except OSError:
                    continue
                seen["workspaces"].append(modes)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    caplog.set_level(logging.DEBUG)
    try:
        result = preheat(engine_for(site), {"image": slow.address + "/private/img-02", "auth_config": {
            "username": ground.user, "password": ground.password}}, {
            "image": slow.address + "/private/img-01", "auth_config": {
                "username": ground.user, "password": WRONG_PASSWORD}}, retry=1)
    finally:
        stop.set()
        sampler.join()
        slow.close()
    assert seen["cmdlines"] >= 3 and seen["environs"] >= 3, seen  # skopeo was caught running, often
    assert not seen["leaks"], seen["leaks"]
    assert seen["workspaces"] and all(modes[0] == 0o700 and all(m == 0o600 for m in modes[1:])
                                      for modes in seen["workspaces"])
    assert not glob.glob(workspaces)  # removed after
    assert [row["image"] for row in result.success] == [slow.address + "/private/img-02"]
    wrong = result.failure[0]
    assert "unauthorized" in wrong["errmsg"] and wrong["retried"] == 1
    shown = json.dumps(result.as_dict()) + caplog.text
    assert not [s for s in secrets + [WRONG_PASSWORD] if s in shown]
    assert any("private/img-02" in record.getMessage() for record in caplog.records)  # the log was captured


def test_bearer_token_origin_with_password_and_identity_token(site, tokens, tokened):
    image, digest = tokened
    engine = engine_for(site)
    for auth in ({"username": TOKEN_USER, "password": TOKEN_PASSWORD}, {"identitytoken": REFRESH}):
        result = preheat(engine, {"image": image, "auth_config": auth})
        assert not result.failure, (sorted(auth), [row["errmsg"] for row in result.failure])
        assert result.success[0]["digest"] == digest
        assert REFRESH not in json.dumps(result.as_dict()) and TOKEN_PASSWORD not in json.dumps(result.as_dict())
    assert tokens.tokens.grants()[-1][:3] == ("POST", None, "refresh_token")  # skopeo used the identity token


# -- (5) errors by class ---------------------------------------------------------------------
def test_missing_image_fails_after_one_attempt(site, origin):
    result = preheat(engine_for(site), origin.address + "/preheat/absent:latest", retry=4)
    row = result.failure[0]
    assert row["retried"] == 1 and row["status"] == "failed"
    assert "manifest unknown" in row["errmsg"] and len(row["errmsg"]) <= 400, row


def test_connection_resets_are_retried(site, origin):
    origin.reset_stats(Rules(reset_first=2))
    result = preheat(engine_for(site), origin.address + "/fixture/img-06:latest", retry=4)
    assert not result.failure, result.failure
    assert result.success[0]["retried"] == 3 and origin.injected == 2


def test_site_refusing_uploads_is_retried_then_fails(site, ground):
    proxy = Proxy(site.port)
    try:
        proxy.reset_stats(Rules(pattern=re.compile(r"^/v2/.+/blobs/uploads/"), fail_first=100, fail_status=503))
        runtime = SiteRuntime(proxy.address)
        result = Engine(EngineConfig(backoff_base=0.05), runtime=runtime).pull(
            parse_pull_request({"images": [ground.image(7)], "retry": 2}))
    finally:
        proxy.close()
    row = result.failure[0]
    assert row["retried"] == 2 and "503" in row["errmsg"] and proxy.address in row["errmsg"], row


def test_unavailable_site_or_skopeo_refuses_before_copying(site, ground):
    request = parse_pull_request({"images": [ground.image(8)]})
    with pytest.raises(DaemonUnavailable) as caught:
        Engine(EngineConfig(), runtime=SiteRuntime(site.address, skopeo="/nonexistent/skopeo")).pull(request)
    assert "/nonexistent/skopeo" in str(caught.value) and site.address in str(caught.value)
    site.stop()
    runtime = SiteRuntime(site.address, timeout=2)
    with pytest.raises(DaemonUnavailable) as caught:
        Engine(EngineConfig(), runtime=runtime).pull(request)
    assert site.address in str(caught.value)
    assert runtime.info()["error"] == str(caught.value)


# -- signs of life and progress ---------------------------------------------------------------
def test_progress_and_signs_of_life_of_a_slow_copy(ground, site, big):
    slow = Proxy(ground.registry_port, rate=1 << 20)  # two 4 MiB layers side by side: ~4 s
    events = []
    try:
        t0 = time.monotonic()
        result = preheat(engine_for(site, stall_timeout=1.5), slow.address + "/" + big[0], retry=1,
                         on_event=events.append)
        seconds = time.monotonic() - t0
    finally:
        slow.close()
    assert not result.failure, result.failure  # far longer than the stall timeout: bytes kept it alive
    assert seconds > 3, seconds
    sizes = {d["digest"][7:19]: d["size"] for d in json.loads(raw(site.address, big[0], "latest"))["layers"]}
    progress = [e.detail for e in events if e.kind == "progress"]
    for layer, size in sizes.items():
        seen = [d["current"] for d in progress if d["layer"] == layer]
        assert len(seen) >= 3 and seen == sorted(seen), seen
        totals = {d["total"] for d in progress if d["layer"] == layer}
        assert all(abs(total - size) <= 0.05 * (1 << 20) for total in totals), (totals, size)
        done = [e.detail for e in events if e.kind == "layer" and e.detail["layer"] == layer and e.detail["done"]]
        assert [d["phase"] for d in done] == ["Copy complete"]
    report(ground, "preheat: 2 x 4 MiB at 1 MiB/s per connection in %.1fs, %d progress events, stall timeout 1.5s"
           % (seconds, len(progress)))


def test_a_copy_that_hangs_mid_blob_stalls(ground, site, big, origin):
    origin.reset_stats(Rules(pattern=BLOBS, hang_body_first=100, hang=30))
    t0 = time.monotonic()
    result = preheat(engine_for(site, stall_timeout=2), origin.address + "/" + big[1], retry=1)
    seconds = time.monotonic() - t0
    row = result.failure[0]
    # skopeo redraws its bars every 150 ms while nothing moves: no sign of life
    assert row["errmsg"] == "stalled: the copy to %s sent nothing for 2s" % site.address, row
    assert seconds < 6, seconds
    assert not skopeo_pids(site.address)


# -- (6) cancel and deadline stop skopeo ----------------------------------------------------------
def _started_copy(slow, site):
    wait_until(lambda: skopeo_pids(site.address) and slow.bytes_out > 0, 20, "skopeo copying")


def test_cancel_stops_skopeo_at_once(ground, site, big):
    slow = Proxy(ground.registry_port, rate=256 << 10)  # 4 MiB layers: 16 s each
    cancel = threading.Event()
    engine = engine_for(site)
    request = parse_pull_request({"images": [slow.address + "/" + big[0]], "retry": 3})
    try:
        thread, result = in_thread(engine.pull, request, cancel=cancel)
        _started_copy(slow, site)
        t0 = time.monotonic()
        cancel.set()
        thread.join(10)
        ended = time.monotonic() - t0
        assert not thread.is_alive() and "error" not in result, result
        wait_until(lambda: not skopeo_pids(site.address), 2, "no skopeo left")
        wait_until(lambda: slow.closed, 2, "the proxy to see the connection close")
    finally:
        slow.close()
    row = result["value"].failure[0]
    assert row["status"] == "cancelled" and ended < 2, (row, ended)
    assert slow.closed[0] - t0 < 2


def test_deadline_stops_skopeo(ground, site, big):
    slow = Proxy(ground.registry_port, rate=256 << 10)
    try:
        t0 = time.monotonic()
        thread, result = in_thread(preheat, engine_for(site), slow.address + "/" + big[1], retry=3, timeout="3s")
        _started_copy(slow, site)
        thread.join(15)
        seconds = time.monotonic() - t0
        assert not thread.is_alive() and "error" not in result, result
        wait_until(lambda: not skopeo_pids(site.address), 2, "no skopeo left")
        wait_until(lambda: slow.closed, 2, "the proxy to see the connection close")
    finally:
        slow.close()
    row = result["value"].failure[0]
    assert row["errmsg"].startswith("timeout: ") and row["retried"] == 1, row
    assert 3 <= seconds < 6, seconds


GEVENT_CHILD = textwrap.dedent("""
    import json, sys, time
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from puller.core._engine import Engine, EngineConfig
    from puller.core._request import parse_pull_request
    from puller.core._runtime_site import SiteRuntime

    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    t = gevent.spawn(ticker)
    engine = Engine(EngineConfig(stall_timeout=1.5), runtime=SiteRuntime(sys.argv[1]))
    events = []
    t0 = time.monotonic()
    result = engine.pull(parse_pull_request({"images": [sys.argv[2]], "retry": 1}), on_event=events.append)
    t1 = time.monotonic()
    t.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if t0 <= a <= t1]
    print(json.dumps({"report": result.as_dict(), "seconds": t1 - t0, "max_gap": max(gaps),
                      "progress": sum(1 for e in events if e.kind == "progress")}))
""")


def test_copy_under_gevent_leaves_other_greenlets_running(ground, site, big):
    slow = Proxy(ground.registry_port, rate=2 << 20)
    try:
        out = subprocess.run([sys.executable, "-c", GEVENT_CHILD, site.address, slow.address + "/" + big[1]],
                             check=True, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    finally:
        slow.close()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not result["report"]["failure"], result
    assert result["report"]["success"][0]["bytes_copied"] > 8 << 20
    assert result["seconds"] > 1.5 and result["progress"] >= 4, result
    assert result["max_gap"] < 0.5, result  # reading skopeo's output never blocked the hub
    report(ground, "preheat under gevent: a %.1fs copy, longest gap of another greenlet %.0f ms"
           % (result["seconds"], result["max_gap"] * 1000))
