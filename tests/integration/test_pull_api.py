"""POST /pull against the real daemon and registries: the seed contract."""

import datetime
import threading

import pytest
import requests

from conftest import LEAKS
from puller.core._godur import parse_duration

ROW_KEYS = {"image", "tag", "project", "cost", "retried", "errmsg", "digest", "id", "previous_id", "status"}


def _assert_row(row):
    assert set(row) == ROW_KEYS
    assert parse_duration(row["cost"]) > 0
    assert isinstance(row["retried"], int) and row["retried"] >= 1


def test_seed_shaped_request_pulls_every_image(clean, server):
    ground = clean
    images = [{"image": ground.image(n), "tag": "latest", "project": "p%d" % n} for n in (1, 2, 3)]
    images.append({"image": ground.private_image(1), "tag": "latest", "project": "priv",
                   "auth_config": {"username": ground.user, "password": ground.password}})
    resp = server.pull({"concurrency": 10, "retry": 3, "images": images})
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"success", "failure", "startAt", "cost"}
    assert body["failure"] == []
    assert parse_duration(body["cost"]) > 0
    datetime.datetime.fromisoformat(body["startAt"])  # RFC 3339 with offset
    assert body["startAt"][-6] in "+-"
    assert [r["project"] for r in body["success"]] == ["p1", "p2", "p3", "priv"]
    for row in body["success"]:
        _assert_row(row)
        assert row["retried"] == 1 and row["errmsg"] == "" and row["status"] == "pulled"
        assert row["digest"].startswith("sha256:") and row["id"].startswith("sha256:")
    client = ground.client()
    for image in images:
        assert client.inspect_image(image["image"] + ":latest")["Id"]


def test_second_pull_reports_up_to_date(clean, server):
    body = {"images": [{"image": clean.image(4), "tag": "latest"}]}
    first = server.pull(body).json()["success"][0]
    second = server.pull(body).json()["success"][0]
    assert (first["status"], second["status"]) == ("pulled", "up_to_date")
    assert first["id"] == second["id"] and first["digest"] == second["digest"]


def test_pull_by_digest(clean, server):
    first = server.pull({"images": [clean.image(5)]}).json()["success"][0]
    clean.remove_all_images()
    resp = server.pull({"images": [{"image": clean.image(5) + "@" + first["digest"], "project": "pinned"}]})
    assert resp.status_code == 200, resp.text
    row = resp.json()["success"][0]
    assert row["id"] == first["id"] and row["tag"] == first["digest"]


def test_wrong_password_fails_once_and_hides_the_password(clean, server):
    wrong = "Wr0ng-" + clean.password
    LEAKS.secrets.add(wrong)
    resp = server.pull({"retry": 3, "images": [
        {"image": clean.private_image(1), "tag": "latest", "project": "p",
         "auth_config": {"username": clean.user, "password": wrong}}]})
    assert resp.status_code == 500
    (row,) = resp.json()["failure"]
    assert row["retried"] == 1
    assert "unauthorized" in row["errmsg"]
    assert wrong not in resp.text and clean.password not in resp.text
    assert wrong not in server.log()


def test_nonexistent_image_fails_after_one_attempt(clean, server):
    resp = server.pull({"retry": 5, "images": [
        {"image": clean.image(1), "tag": "latest", "project": "ok"},
        {"image": clean.registry + "/fixture/does-not-exist", "tag": "latest", "project": "missing"}]})
    assert resp.status_code == 500
    body = resp.json()
    assert [r["project"] for r in body["success"]] == ["ok"]
    (row,) = body["failure"]
    _assert_row(row)
    assert row["retried"] == 1 and row["status"] == "failed"
    assert "manifest unknown" in row["errmsg"] or "not found" in row["errmsg"]


def test_unreachable_registry_is_retried(clean, server):
    # Nothing listens on port 9: connection refused is transient, so all attempts are made.
    resp = server.pull({"retry": 3, "images": [{"image": "localhost:9/fixture/x", "tag": "latest"}]})
    assert resp.status_code == 500
    (row,) = resp.json()["failure"]
    assert row["retried"] == 3
    assert "connection refused" in row["errmsg"]


def test_duplicates_and_concurrent_requests_share_one_pull(clean, server, proxy):
    from faultproxy import Rules

    image = clean.image(6, registry=proxy.address)
    # Baseline: what one plain daemon pull asks the registry for. dockerd 20.10
    # makes two or three manifest requests per pull (HEAD by tag, GET by
    # digest, sometimes GET by tag), so take the most of three plain pulls.
    client = clean.client()
    baseline = 0
    for _i in range(3):
        proxy.reset_stats()
        client.pull(image, tag="latest")
        baseline = max(baseline, len(proxy.manifest_requests))
        clean.remove_all_images()
    assert baseline >= 1
    # Hold manifests long enough for the requests below to overlap.
    proxy.reset_stats(Rules(delay=0.5))
    body = {"concurrency": 4, "images": [
        {"image": image, "tag": "latest", "project": p} for p in ("a", "b", "c")]}
    results = []
    threads = [threading.Thread(target=lambda: results.append(server.pull(body))) for _i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200]
    for r in results:
        assert [row["project"] for row in r.json()["success"]] == ["a", "b", "c"]
    assert len(proxy.manifest_requests) <= baseline, (proxy.manifest_requests, server.log())
    assert server.log().count("attempt 1/") == 1, "the daemon was asked to pull more than once"


@pytest.mark.parametrize("concurrency", [1, 3])
def test_request_concurrency_is_honoured(clean, server, proxy, concurrency):
    from faultproxy import Rules

    proxy.reset_stats(Rules(delay=0.3))
    images = [clean.image(n, registry=proxy.address) for n in range(7, 13)]
    resp = server.pull({"concurrency": concurrency, "images": images})
    assert resp.status_code == 200, resp.text
    assert 1 <= proxy.max_in_flight_manifests <= concurrency
    if concurrency > 1:
        assert proxy.max_in_flight_manifests > 1, "pulls did not overlap at all"


def test_pull_missing_skips_present_images_without_asking_the_registry(clean, server, proxy):
    present, absent = clean.image(7, registry=proxy.address), clean.image(8, registry=proxy.address)
    first = server.pull({"images": [present]}).json()["success"][0]
    proxy.reset_stats()
    resp = server.pull({"pull": "missing", "images": [present, absent]})
    assert resp.status_code == 200, resp.text
    rows = resp.json()["success"]
    assert [r["status"] for r in rows] == ["present", "pulled"]
    assert rows[0]["retried"] == 0 and rows[0]["id"] == first["id"] == rows[0]["previous_id"]
    assert rows[1]["previous_id"] == "" and rows[1]["id"]
    assert all(absent.split("/", 1)[1] in path for _method, path in proxy.manifest_requests)


def test_dry_run_pulls_nothing(clean, server, proxy):
    present, absent = clean.image(9), clean.image(10)
    server.pull({"images": [present]})
    resp = server.pull({"dry_run": True, "images": [present, absent]})
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["success"]] == ["present", "would_pull"]
    assert len(clean.client().images()) == 1


def test_per_request_timeout(clean, server, proxy):
    from faultproxy import Rules

    proxy.reset_stats(Rules(stall=6))
    resp = server.pull({"timeout": "1s", "images": [clean.image(11, registry=proxy.address)]})
    assert resp.status_code == 500
    row = resp.json()["failure"][0]
    assert "timeout" in row["errmsg"] and parse_duration(row["cost"]) < 3


def test_metrics_count_requests_images_and_attempts(clean, server, proxy):
    from faultproxy import Rules

    proxy.reset_stats(Rules(fail_first=2))  # HEAD and GET by tag: the first attempt fails
    server.pull({"retry": 3, "images": [clean.image(12, registry=proxy.address), clean.registry + "/fixture/nope"]})
    text = requests.get(server.url + "/metrics").text
    assert 'puller_pull_requests_total{code="500"} 1.0' in text
    assert 'puller_images_total{status="pulled"} 1.0' in text
    assert 'puller_images_total{status="failed"} 1.0' in text
    assert "puller_pull_retries_total 1.0" in text
    assert "puller_pull_attempts_total 3.0" in text
    assert "puller_image_pull_seconds_count 2.0" in text
    assert "puller_pulls_in_flight 0.0" in text
