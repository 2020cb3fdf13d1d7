"""Mirrors and pull-through caches for any registry, against real registries.

The origin is the open test registry behind a counting proxy (its address is
the images' registry name); mirrors are ``docker-registry`` processes in
proxy mode in front of it; a rogue registry plays a mirror with other content.
"""

import json
import re
import subprocess
import sys
import time

import docker
import pytest
import requests

from conftest import LEAKS, TESTENV, report
from faultproxy import FaultProxy, Rules
from mirrors import Registry, free_port, htpasswd_file, layer_digests, push
from puller.core._engine import Engine, EngineConfig
from puller.core._request import parse_pull_request


@pytest.fixture
def origin(ground):
    counter = FaultProxy(ground.registry_port, preserve_headers=True)
    yield counter
    counter.close()


@pytest.fixture
def cache(origin, tmp_path):
    mirror = Registry(tmp_path, remote="http://127.0.0.1:%d" % origin.port)
    yield mirror
    mirror.stop()


def _engine(socket):
    return Engine(EngineConfig(docker_host=socket, backoff_base=0.05))


def _pull(engine, images, mirrors, **kwargs):
    body = {"images": images, "concurrency": 5}
    body.update(kwargs.pop("body", {}))
    return engine.pull(parse_pull_request(body, mirrors=mirrors, **kwargs))


def _names(client):
    return sorted(tag for image in client.images() for tag in image.get("RepoTags") or [])


@pytest.fixture(scope="module")
def hosts(ground):
    out = subprocess.run(["bash", str(TESTENV), "hosts", ground.dir, "3"], check=True, capture_output=True,
                         text=True).stdout.split()
    return out


def _empty(socket):
    client = docker.APIClient(base_url="unix://" + socket, version="auto")
    client.prune_images(filters={"dangling": False})
    return client


def test_three_hosts_pull_a_release_through_one_mirror_and_the_origin_serves_it_about_once(
        clean, origin, cache, hosts):
    release = [clean.image(n, registry=origin.address) for n in range(1, 11)]
    mirrors = {origin.address: (cache.address,)}
    # Without the mirror: every host is a copy of the release at the origin.
    origin.reset_stats()
    client = _empty(hosts[0])
    assert _pull(_engine(hosts[0]), release, {}).ok
    one_copy = origin.bytes_out
    assert one_copy > 0
    # Through the mirror: warm it from one host, then fan out.
    origin.reset_stats()
    per_host = []
    for socket in hosts:
        client = _empty(socket)
        before = origin.bytes_out
        result = _pull(_engine(socket), release, mirrors)
        assert result.ok, result.failure
        assert {row["source"] for row in result.success} == {cache.address}
        names = _names(client)
        assert names == sorted(image + ":latest" for image in release), names
        assert not any(cache.address in name for name in names), "a mirror-named tag was left"
        per_host.append(origin.bytes_out - before)
    fill, after = per_host[0], sum(per_host[1:])
    assert after <= 0.2 * one_copy, (one_copy, per_host)
    report(clean, "mirror, 3 hosts x 10 images: origin served %.2f copies to fill the mirror, then %.2f copies for "
           "the other 2 hosts (direct: 1 copy per host)" % (fill / float(one_copy), after / float(one_copy)))


def test_a_mirror_that_dies_mid_job_costs_one_try_per_image(clean, origin, cache, start_server):
    origin.reset_stats(Rules(delay=0.4))  # each image takes a moment, so the job is caught mid-way
    server = start_server("--mirror", "%s=%s" % (origin.address, cache.address))
    images = [clean.image(n, registry=origin.address) for n in range(11, 17)]
    job_id = requests.post(server.url + "/jobs", json={"images": images, "retry": 3, "concurrency": 1}).json()["id"]
    for _i in range(300):
        if requests.get(server.url + "/jobs/" + job_id).json()["succeeded"] >= 2:
            break
        time.sleep(0.05)
    cache.stop()
    while requests.get(server.url + "/jobs/" + job_id).json()["status"] in ("queued", "running"):
        time.sleep(0.1)
    job = requests.get(server.url + "/jobs/" + job_id).json()
    assert job["status"] == "succeeded", job
    rows = [image["row"] for image in job["images"]]
    by_mirror = [row for row in rows if row["source"] == cache.address]
    by_origin = [row for row in rows if row["source"] == origin.address]
    assert len(by_mirror) >= 2 and len(by_origin) >= 3, rows
    for row in by_origin:
        assert row["retried"] == 1, row  # the dead mirror cost one try, not the retry budget
        (skipped,) = row["mirrors"]
        assert skipped["mirror"] == cache.address and skipped["error"]
    client = clean.client()
    assert all(client.images(name=image) for image in images)
    metrics = requests.get(server.url + "/metrics").text
    assert 'puller_mirror_fallbacks_total{mirror="%s"} %d.0' % (cache.address, len(by_origin)) in metrics
    assert requests.get(server.url + "/debug/dump").json()["configs"]["mirrors"] == {origin.address: [cache.address]}


def test_a_stale_mirror_cannot_serve_an_old_copy_of_a_tag(clean, origin, cache, tmp_path):
    engine = _engine(clean.socket)
    mirrors = {origin.address: (cache.address,)}
    moving = "%s/stale/app:current" % clean.registry
    old = push(clean, clean.image(18) + ":latest", moving)
    via_origin = "%s/stale/app" % origin.address
    assert _pull(engine, [via_origin + ":current"], mirrors).ok  # the mirror caches the old copy
    new = push(clean, clean.image(19) + ":latest", moving)
    assert new != old
    clean.remove_all_images()
    result = _pull(engine, [via_origin + ":current"], mirrors)
    (row,) = result.success
    assert row["digest"] == new and row["source"] == cache.address, row
    repo_digests = clean.client().inspect_image(via_origin + ":current")["RepoDigests"]
    assert not any(old in d for d in repo_digests)


def test_mirror_credentials_are_the_mirror_s_own(clean, origin, tmp_path, start_server):
    user, password, wrong = "mirror-user", "Mirror-Pa55-Word-1", "Wrong-Mirror-Pw-2"
    LEAKS.secrets.update({password, wrong})
    guarded = Registry(tmp_path, remote="http://127.0.0.1:%d" % origin.port,
                       htpasswd=htpasswd_file(tmp_path / "mirror.htpasswd", user, password))
    auth_file = tmp_path / "mirror-auth.json"
    auth_file.write_text(json.dumps({guarded.address: {"username": user, "password": password}}))
    auth_file.chmod(0o600)
    try:
        server = start_server("--mirror", "%s=%s" % (origin.address, guarded.address),
                              "--mirror-auth-file", str(auth_file))
        image = clean.image(20, registry=origin.address)
        good = server.pull({"images": [image]})
        assert good.status_code == 200 and good.json()["success"][0]["source"] == guarded.address, good.text
        clean.remove_all_images()
        bad = server.pull({"images": [image], "mirror_auth": {guarded.address: {"username": user,
                                                                                "password": wrong}}})
        (row,) = bad.json()["success"]
        assert row["source"] == origin.address
        assert "unauthorized" in row["mirrors"][0]["error"] and wrong not in bad.text
        clean.remove_all_images()
        # The origin's credentials are never handed to a mirror.
        bare = start_server("--mirror", "%s=%s" % (origin.address, guarded.address))
        resp = bare.pull({"images": [{"image": image, "auth_config": {"username": user, "password": password}}]})
        assert resp.json()["success"][0]["source"] == origin.address, resp.text
        assert password not in requests.get(server.url + "/debug/dump").text
    finally:
        guarded.stop()


def test_request_mirrors_need_permission_and_cannot_plant_content(clean, origin, tmp_path, start_server):
    rogue = Registry(tmp_path)  # a "mirror" with content of its own under the same name
    try:
        name = "fixture/img-21:latest"
        push(clean, clean.image(22) + ":latest", "%s/%s" % (rogue.address, name))
        canonical = "%s/%s" % (origin.address, name)
        body = {"images": [canonical], "mirrors": {origin.address: [rogue.address]}}
        strict = start_server()
        resp = strict.pull(body)
        assert resp.status_code == 403 and resp.json()["field"] == "mirrors.%s" % origin.address
        assert requests.post(strict.url + "/jobs", json=body).status_code == 403
        lenient = start_server("--allow-request-mirrors")
        resp = lenient.pull(body)
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert row["source"] == origin.address and row["mirrors"][0]["mirror"] == rogue.address
        expected = clean.client().inspect_distribution(clean.image(21) + ":latest")["Descriptor"]["digest"]
        assert row["digest"] == expected, "the rogue mirror's content replaced the canonical image"
        # With the origin unreachable, a request mirror is never used unconfirmed.
        origin.reset_stats(Rules(fail_first=1000, fail_status=503))
        clean.remove_all_images()
        resp = lenient.pull(dict(body, retry=1))
        (row,) = resp.json()["failure"]
        assert "could not confirm" in row["mirrors"][0]["error"]
        assert not clean.client().images(name=canonical.rsplit(":", 1)[0])
    finally:
        rogue.stop()


def test_the_allow_list_bounds_mirrors_too(clean, tmp_path, start_server):
    outside = FaultProxy(clean.registry_port, preserve_headers=True)  # a real registry, counting what it is asked
    outside.reset_stats(Rules(pattern=re.compile(".*")))
    try:
        server = start_server("--allow-registry", clean.registry, "--allow-request-mirrors")
        body = {"images": [clean.image(1)], "mirrors": {clean.registry: [outside.address]}}
        for path in ("/pull", "/jobs"):
            resp = requests.post(server.url + path, json=body, timeout=60)
            assert resp.status_code == 403, resp.text
            assert resp.json()["field"] == "mirrors.%s[0]" % clean.registry
            assert outside.address in resp.json()["error"] and "not allowed" in resp.json()["error"]
        assert outside.matched == 0, outside.manifest_requests
        assert not clean.client().images(name=clean.image(1))
        # Admitted by the allow-list, the same mirror is used, and counted in
        # /metrics as a request's mirror, not as one more series by host.
        admitted = start_server("--allow-registry", clean.registry, "--allow-registry", outside.address,
                                "--allow-request-mirrors")
        (row,) = admitted.pull(body).json()["success"]
        assert row["source"] == outside.address and outside.matched > 0, row
        metrics = requests.get(admitted.url + "/metrics").text
        assert 'puller_pulls_by_source_total{source="request"} 1.0' in metrics
        assert outside.address not in metrics
    finally:
        outside.close()
    # An operator's mirror outside the allow-list stops the start.
    proc = subprocess.run([sys.executable, "-m", "puller", "serve", "--listen", "127.0.0.1:%d" % free_port(),
                           "--docker-socket", clean.socket, "--state-dir", str(tmp_path / "refused"),
                           "--allow-registry", clean.registry, "--mirror", "%s=%s" % (clean.registry, outside.address)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "--mirror" in proc.stderr and outside.address in proc.stderr and "--allow-registry" in proc.stderr


def test_a_mirror_that_hangs_mid_blob_leaves_the_origin_half_of_the_deadline(clean, origin, cache, start_server):
    hanging = FaultProxy(cache.port, preserve_headers=True)  # the mirror, behind a proxy that hangs one layer
    layer = layer_digests(clean.registry, "fixture/img-03")[0]
    hanging.reset_stats(Rules(pattern=re.compile("^/v2/.+/blobs/%s$" % layer), hang_body_first=100, hang=90))
    try:
        server = start_server("--mirror", "%s=%s" % (origin.address, hanging.address))  # stall timeout: 2 min
        t0 = time.monotonic()
        resp = server.pull({"images": [clean.image(3, registry=origin.address)], "timeout": "30s"})
        took = time.monotonic() - t0
        assert resp.status_code == 200, resp.text
        (row,) = resp.json()["success"]
        assert row["source"] == origin.address, row
        (skipped,) = row["mirrors"]
        assert skipped["mirror"] == hanging.address, skipped
        share = re.search(r"timed out after ([0-9.]+)s", skipped["error"])  # half of the ~30 s left
        assert share and 10 < float(share.group(1)) <= 15, skipped
        assert hanging.injected >= 1 and took < 30, (hanging.injected, took)
        assert clean.client().images(name=clean.image(3, registry=origin.address))
    finally:
        hanging.close()
    report(clean, "mirror hanging mid-blob, 30 s request, 2 min stall timeout: pulled from the origin in %.1f s, "
           "the row names the mirror (before: failed at 30 s, no mirror named)" % took)


def test_bad_mirror_maps_are_400_naming_the_field(server):
    for body, field in (({"images": ["a"], "mirrors": ["x"]}, "mirrors"),
                        ({"images": ["a"], "mirrors": {"docker.io": "x/y"}}, "mirrors.docker.io[0]"),
                        ({"images": ["a"], "mirrors": {"docker.io": [3]}}, "mirrors.docker.io[0]"),
                        ({"images": ["a"], "mirror_auth": {"m:5000": {"pw": "x"}}}, "mirror_auth.m:5000.pw")):
        resp = server.pull(body)
        assert resp.status_code == 400 and resp.json()["field"] == field, (body, resp.text)


def test_cli_pull_with_a_mirror(clean, origin, cache):
    import sys

    image = clean.image(23, registry=origin.address)
    proc = subprocess.run([sys.executable, "-m", "puller", "pull", "--docker-socket", clean.socket, "--json",
                           "--mirror", "%s=%s" % (origin.address, cache.address), image],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["success"]
    assert row["source"] == cache.address
    assert clean.client().images(name=image)
