"""The CRI runtime (``CriRuntime``) against the test ground's private containerd
and registries, driven as the engine's attempt drives a runtime: through a
watch with the seam's contract (``alive``, ``emit``, ``on_abort``, ``fired``,
``error``, ``memo``) and a real watchdog thread of its own."""

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from conftest import LEAKS, fixture_set, report
from faultproxy import FaultProxy, Rules
from mirrors import layer_digests
from puller.core._errors import DaemonUnavailable, DeadlineExceeded, PermanentPullError, TransientPullError
from puller.core._reference import parse_reference
from puller.core._runtime import local_key
from puller.core._runtime_cri import MEMO_KEY, CriRuntime
from puller.jobs.model import Entry
import test_cri_client
import test_registry_client
from criwatch import AgentProxy, Watch, empty_store, pull
from test_cri_client import SlowProxy, _containerd, registry_digest, wait_until
from test_registry_client import INDEX_REPO, TOKEN_PASSWORD, TOKEN_USER

# The fixtures of the CRI client's and the registry client's tests, here too.
cri_env = test_cri_client.cri_env
tokens, tokened, index_image = test_registry_client.tokens, test_registry_client.tokened, test_registry_client.index_image

SET = "crirt-big"  # two images of two 4 MiB layers each (random data)
LAYER_KIB = 4096
WRONG_PASSWORD = "Wr0ng-Crirt-Pa55word"
LEAKS.secrets.add(WRONG_PASSWORD)
RATE = 2 << 20  # bytes a second per connection through the slow proxy: a pull lasts ~2 s


@pytest.fixture(scope="session")
def big_set(ground):
    """``crirt-big/img-01`` and ``-02``, built and pushed once."""
    return fixture_set(ground, SET, 2, 2, LAYER_KIB)


@pytest.fixture
def runtime(cri_env):
    rt = CriRuntime(cri_env["PULLER_TEST_CRI_SOCKET"], timeout=10)
    empty_store(rt._client_or_raise(), cri_env)
    yield rt
    empty_store(rt._client_or_raise(), cri_env)
    rt.close()


def test_progress_rises_layers_complete_and_alive_while_pulling(runtime, ground, big_set):
    slow = SlowProxy(ground.registry_port, rate=RATE)
    try:
        image = "%s/%s" % (slow.address, big_set[0])
        watch = Watch(stall=1.5)  # far less than the pull lasts: only signs of life keep it going
        t0 = time.monotonic()
        digest = pull(runtime, image, watch)
        seconds = time.monotonic() - t0
    finally:
        slow.close()
    assert not watch.fired
    assert digest == registry_digest(ground.registry, big_set[0])
    assert seconds > 1.5, seconds
    layers = {d["layer"] for d in watch.of("layer", "Waiting")}
    assert len(layers) == 2 and all(re.fullmatch(r"[0-9a-f]{12}", layer) for layer in layers)
    for layer in layers:
        seen = [d["current"] for d in watch.of("progress", "Downloading") if d["layer"] == layer]
        assert len(seen) >= 2 and seen == sorted(seen), seen  # rises, in ~1 MiB steps
        assert [d["layer"] for d in watch.of("progress", "Download complete")].count(layer) == 1
        done = [d for d in watch.of("layer", "Pull complete") if d["layer"] == layer]
        assert len(done) == 1 and done[0]["done"]
    sizes = {d["layer"]: d["total"] for d in watch.of("progress", "Download complete")}
    assert all(size > LAYER_KIB * 1024 for size in sizes.values())
    # alive() all along: never a gap near the stall timeout while bytes moved
    times = [t0] + watch.alive_at
    assert len(watch.alive_at) >= 4 and max(b - a for a, b in zip(times, times[1:])) < 1.5
    # What a job makes of these events: its figure rises to ~100 before the end.
    entry = Entry(0, image, "latest", None)
    figures = []
    for _t, kind, detail in watch.events:
        entry.layer(detail)
        figures.append(entry.progress)
    assert figures == sorted(figures)
    assert any(10 < f < 70 for f in figures), figures  # seen part way
    assert figures[-1] >= 99 and entry.bytes_done == entry.bytes_total == sum(sizes.values())
    report(ground, "cri runtime: a %.1fs pull of 8 MiB gave %d progress events, %d alive() calls"
           % (seconds, len(watch.of("progress")), len(watch.alive_at)))


def test_manifest_is_fetched_once_per_shared_pull(runtime, ground, big_set, cri_env):
    proxy = AgentProxy(ground.registry_port)
    try:
        image = "%s/%s" % (proxy.address, big_set[1])
        memo = {}
        for _attempt in range(2):  # two attempts of one shared pull: one memo
            assert pull(runtime, image, Watch(memo=memo)) == registry_digest(ground.registry, big_set[1])
            empty_store(runtime._client_or_raise(), cri_env)
        assert proxy.puller_gets() == ["GET"], proxy.agents
        assert memo[MEMO_KEY].manifest is not None and len(memo[MEMO_KEY].manifest.layers) == 2
        assert len([a for a, _c in proxy.agents if not a.startswith("puller")]) >= 2  # containerd asked each time
        pull(runtime, image, Watch())  # another shared pull asks again
        assert proxy.puller_gets() == ["GET", "GET"]
    finally:
        proxy.close()


def test_no_manifest_still_pulls(runtime, ground, big_set):
    proxy = AgentProxy(ground.registry_port, rate=RATE)
    proxy.refuse_puller = True
    try:
        image = "%s/%s" % (proxy.address, big_set[0])
        watch = Watch(stall=1.5)
        digest = pull(runtime, image, watch)
    finally:
        proxy.close()
    assert digest == registry_digest(ground.registry, big_set[0]) and not watch.fired
    fetch = watch.memo[MEMO_KEY]
    assert fetch.manifest is None and "503" in fetch.error
    assert watch.events == []  # no per-layer progress without the manifest...
    assert len(watch.alive_at) >= 3  # ...but the downloads still kept it alive


def test_private_image_with_credentials(runtime, ground):
    image = ground.private_image(1)
    watch = Watch()
    with pytest.raises(PermanentPullError) as caught:
        pull(runtime, image, watch, auth={"username": ground.user, "password": WRONG_PASSWORD})
    assert "401" in caught.value.message and WRONG_PASSWORD not in caught.value.message
    assert WRONG_PASSWORD not in (watch.memo[MEMO_KEY].error or "")
    # Credentials named for another host go to neither containerd's registry nor ours.
    watch = Watch()
    with pytest.raises(PermanentPullError):
        pull(runtime, image, watch, auth={"username": ground.user, "password": ground.password,
                                          "serveraddress": "other.example:5000"})
    assert wait_until(lambda: watch.memo[MEMO_KEY].done, 10) and "401" in watch.memo[MEMO_KEY].error
    watch = Watch()
    digest = pull(runtime, image, watch, auth={"username": ground.user, "password": ground.password})
    assert digest == registry_digest(ground.auth_registry, "private/img-01", auth=(ground.user, ground.password))
    assert watch.memo[MEMO_KEY].manifest is not None  # basic auth at the registry worked for the manifest too
    assert len(watch.of("layer", "Pull complete")) == len(watch.memo[MEMO_KEY].manifest.layers) == 3


def test_bearer_token_registry(runtime, tokens, tokened):
    image, digest = tokened
    with pytest.raises(PermanentPullError) as caught:
        pull(runtime, image, Watch())
    assert "pull access denied" in caught.value.message  # the anonymous token grants nothing
    watch = Watch()
    before = len(tokens.tokens.grants())
    assert pull(runtime, image, watch, auth={"username": TOKEN_USER, "password": TOKEN_PASSWORD}) == digest
    assert watch.memo[MEMO_KEY].manifest.digest == digest  # the manifest came with a token too
    assert len(watch.of("layer", "Pull complete")) == 3
    grants, scope = tokens.tokens.grants()[before:], "repository:crirt/tokened:pull"
    assert ("POST", TOKEN_USER, "password", scope) in grants  # containerd's OAuth2 password grant
    assert ("GET", TOKEN_USER, None, scope) in grants  # ours: basic credentials to the realm


def test_index_pull_follows_the_node_platform(runtime, ground, index_image):
    index_digest, by_platform = index_image
    watch = Watch()
    assert pull(runtime, "%s/%s" % (ground.registry, INDEX_REPO), watch) == index_digest
    fetched = watch.memo[MEMO_KEY].manifest
    assert fetched.index_digest == index_digest and fetched.digest == by_platform["linux/amd64"]
    layers = [d["layer"] for d in watch.of("layer", "Waiting")]
    assert layers == [digest.split(":")[1][:12] for digest in layer_digests(ground.registry, "fixture/img-02")]


def test_abort_stops_the_pull_fast_and_leaves_no_image(runtime, ground, big_set):
    slow = SlowProxy(ground.registry_port, rate=RATE // 2)
    try:
        image = "%s/%s" % (slow.address, big_set[1])
        watch = Watch()
        threading.Thread(target=lambda: wait_until(lambda: watch.of("progress", "Downloading"), 30) and
                         watch.fire("deadline"), daemon=True).start()
        with pytest.raises(DeadlineExceeded) as caught:
            pull(runtime, image, watch)
        ended = time.monotonic()
        assert "exceeded the deadline" in caught.value.message
        assert ended - watch.fired_at < 1.0
        client = runtime._client_or_raise()
        assert wait_until(lambda: client.ingests() == [], 5)
        assert client.image_status(image) is None
        sent = slow.bytes_out
        assert sent < 2 * LAYER_KIB * 1024
        time.sleep(1.0)
        assert slow.bytes_out - sent < 256 << 10
    finally:
        slow.close()


def test_a_stalled_pull_is_not_kept_alive_by_another(runtime, ground, big_set):
    slow = SlowProxy(ground.registry_port, rate=RATE)
    stuck = FaultProxy(ground.registry_port)
    stuck.reset_stats(Rules(pattern=re.compile(r"^/v2/.+/blobs/"), hang_body_first=100, hang=30.0))
    try:
        moving, stalled = Watch(stall=2.0), Watch(stall=2.0)
        results = {}

        def run(name, image, watch):
            try:
                results[name] = pull(runtime, "%s/%s" % image, watch)
            except Exception as exc:  # noqa: BLE001 - the test looks at it
                results[name] = exc

        threads = [threading.Thread(target=run, args=("moving", (slow.address, big_set[0]), moving)),
                   threading.Thread(target=run, args=("stalled", (stuck.address, big_set[1]), stalled))]
        polls, t0 = runtime.poller.polls, time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        seconds, polls = time.monotonic() - t0, runtime.poller.polls - polls
    finally:
        stuck.close()
        slow.close()
    # One ListStatuses per interval serves both pulls.
    assert polls <= seconds / runtime.poll_interval + 2, (polls, seconds)
    report(ground, "cri runtime: 2 pulls at once for %.1fs: %d ListStatuses calls (interval %gs)"
           % (seconds, polls, runtime.poll_interval))
    assert isinstance(results["stalled"], TransientPullError) and "stalled" in results["stalled"].message
    assert stalled.reason == "stalled"
    assert results["moving"] == registry_digest(ground.registry, big_set[0]) and not moving.fired
    # While the stalled pull waited, the other one's downloads moved, and did not count for it.
    last = max(stalled.alive_at or [stalled._start])
    assert stalled.fired_at - last >= 2.0
    assert any(last < t < stalled.fired_at for t in moving.alive_at)
    assert runtime._client_or_raise().image_status("%s/%s" % (stuck.address, big_set[1])) is None


def test_local_images_keys_and_platform(runtime, ground):
    by_tag, pinned = ground.image(1), ground.image(2)
    digest = registry_digest(ground.registry, "fixture/img-02")
    assert pull(runtime, by_tag, Watch()) == registry_digest(ground.registry, "fixture/img-01")
    assert pull(runtime, pinned + "@" + digest, Watch()) == digest
    images = runtime.local_images(timeout=5)
    status = runtime._client_or_raise().image_status(by_tag)
    assert images[str(parse_reference(by_tag + ":latest"))] == status["id"]
    assert images[local_key(parse_reference(pinned + "@" + digest))] == runtime._client_or_raise().image_status(
        pinned + "@" + digest)["id"]
    assert "%s@%s" % (pinned, digest) in images
    assert runtime.local_platform(parse_reference(by_tag + ":latest")) == "linux/amd64"
    assert runtime.local_platform(parse_reference(ground.image(3) + ":latest")) is None
    assert runtime.check_platform("linux/amd64") is None
    message = runtime.check_platform("linux/arm64")
    assert "linux/arm64" in message and "linux/amd64" in message
    assert runtime.check_platform("linux/amd64/v2") is not None
    assert runtime.info() == {"engine": "containerd", "version": runtime.check()["runtime_version"],
                              "api_version": "v1"}
    assert runtime.origin_digest(parse_reference(by_tag), {}, 5) == registry_digest(ground.registry,
                                                                                    "fixture/img-01")


def test_stopped_runtime_is_unavailable_and_a_pull_in_flight_transient(runtime, ground, big_set):
    slow = SlowProxy(ground.registry_port, rate=RATE // 2)
    try:
        watch = Watch()
        stopper = threading.Thread(target=lambda: wait_until(lambda: watch.of("progress", "Downloading"), 30) and
                                   _containerd(ground, "containerd-stop"), daemon=True)
        stopper.start()
        try:
            with pytest.raises(TransientPullError) as caught:
                pull(runtime, "%s/%s" % (slow.address, big_set[0]), watch)
            assert "unavailable" in caught.value.message
            stopper.join(30)  # containerd is gone, not on its way out
            t0 = time.monotonic()
            with pytest.raises(DaemonUnavailable):
                runtime.check(timeout=2)
            assert time.monotonic() - t0 < 3
            assert "error" in runtime.info() and runtime.local_images(timeout=2) == {}
        finally:
            _containerd(ground, "containerd-start")
        assert wait_until(lambda: _answers(runtime), 10, step=0.2)
        # The same runtime pulls again (and finishes the downloads the stop left behind).
        image = "%s/%s" % (slow.address, big_set[0])
        assert pull(runtime, image, Watch()) == registry_digest(ground.registry, big_set[0])
        assert runtime._client_or_raise().ingests() == []
    finally:
        slow.close()


def _answers(rt):
    try:
        return rt.check(timeout=2)
    except DaemonUnavailable:
        return None


GEVENT_CHILD = textwrap.dedent("""
    import json, sys, time
    from gevent import monkey
    monkey.patch_all()
    import gevent
    import grpc.experimental.gevent
    grpc.experimental.gevent.init_gevent()
    from puller.core._runtime_cri import CriRuntime

    class Watch:
        fired, memo = False, {}
        def __init__(self):
            self.alive_calls, self.events = 0, []
        def alive(self):
            self.alive_calls += 1
        def emit(self, kind, detail):
            self.events.append(kind)
        def on_abort(self, fn):
            pass

    runtime = CriRuntime(sys.argv[1])
    ticks = []
    def ticker():
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)
    t = gevent.spawn(ticker)
    watch = Watch()
    name, _sep, tag = sys.argv[2].rpartition(":")
    t0 = time.monotonic()
    digest = gevent.spawn(runtime.pull, name, tag, {}, None, watch).get(timeout=60)
    t1 = time.monotonic()
    t.kill()
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if t0 <= a <= t1]
    print(json.dumps({"digest": digest, "seconds": t1 - t0, "max_gap": max(gaps), "alive": watch.alive_calls,
                      "progress": watch.events.count("progress"), "layer": watch.events.count("layer")}))
""")


def test_pull_under_gevent_leaves_other_greenlets_running(runtime, ground, big_set, cri_env):
    slow = SlowProxy(ground.registry_port, rate=RATE)
    try:
        image = "%s/%s:latest" % (slow.address, big_set[1])
        out = subprocess.run([sys.executable, "-c", GEVENT_CHILD, cri_env["PULLER_TEST_CRI_SOCKET"], image],
                             check=True, capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    finally:
        slow.close()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["digest"] == registry_digest(ground.registry, big_set[1])
    assert result["seconds"] > 1 and result["alive"] >= 2 and result["progress"] >= 4 and result["layer"] >= 4
    assert result["max_gap"] < 0.5, result  # the poller, the manifest fetch and the pull never blocked the hub
    report(ground, "cri runtime under gevent: a %.1fs pull, longest gap of another greenlet %.0f ms"
           % (result["seconds"], result["max_gap"] * 1000))
