"""Bad input: the right status, a JSON body, and the field named."""

import pytest
import requests

from conftest import LEAKS

BAD_BODIES = [
    # (raw body or JSON value, expected field)
    (b'{"images": [', "body"),
    (b"\xff\xfe", "body"),
    ([], "body"),
    ({}, "images"),
    ({"images": "busybox"}, "images"),
    ({"images": []}, "images"),
    ({"images": [42]}, "images[0]"),
    ({"images": [{"tag": "latest"}]}, "images[0].image"),
    ({"images": [{"image": ["busybox"]}]}, "images[0].image"),
    ({"images": [{"image": "Busybox"}]}, "images[0].image"),
    ({"images": [{"image": "bad ref"}]}, "images[0].image"),
    ({"images": [{"image": "repo@sha256:abc"}]}, "images[0].image"),
    ({"images": ["busybox", {"image": "busybox", "tag": "-x"}]}, "images[1].tag"),
    ({"images": [{"image": "busybox:1.36", "tag": "1.35"}]}, "images[0].tag"),
    ({"images": [{"image": "busybox", "tag": 7}]}, "images[0].tag"),
    ({"images": [{"image": "busybox", "project": 3}]}, "images[0].project"),
    ({"images": [{"image": "busybox", "auth_config": "tom:pw"}]}, "images[0].auth_config"),
    ({"images": [{"image": "busybox", "auth_config": {"passwd": "x"}}]}, "images[0].auth_config.passwd"),
    ({"images": [{"image": "busybox", "auth_config": {"password": 12345}}]}, "images[0].auth_config.password"),
    ({"images": ["busybox"], "concurrency": "10"}, "concurrency"),
    ({"images": ["busybox"], "retry": 1.5}, "retry"),
    ({"images": ["busybox"], "retry": True}, "retry"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f for _body, f in BAD_BODIES])
def test_bad_body_is_400_naming_the_field(server, body, field):
    if isinstance(body, bytes):
        resp = requests.post(server.url + "/pull", data=body, headers={"Content-Type": "application/json"})
    else:
        resp = server.pull(body)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"] == "application/json"
    payload = resp.json()
    assert payload["field"] == field
    assert payload["error"]


def test_too_many_images_is_400(start_server):
    server = start_server("--max-images", "3")
    resp = server.pull({"images": ["busybox"] * 4})
    assert resp.status_code == 400
    assert resp.json()["field"] == "images" and "at most 3" in resp.json()["error"]


def test_oversized_body_is_413(start_server):
    server = start_server("--max-body", "1000")
    resp = server.pull({"images": ["busybox"] * 200})
    assert resp.status_code == 413
    assert resp.json()["field"] == "body"


def test_wrong_method_and_unknown_path_are_json(server):
    resp = requests.get(server.url + "/pull")
    assert resp.status_code == 405 and resp.json()["error"]
    resp = requests.post(server.url + "/nowhere", json={})
    assert resp.status_code == 404 and resp.json()["error"]


def test_secret_in_bad_input_is_not_echoed(server):
    secret = "Very-Secret-Value-123"
    LEAKS.secrets.add(secret)
    resp = server.pull({"images": [{"image": "busybox", "auth_config": {"password": secret, "bogus": secret}}]})
    assert resp.status_code == 400
    assert secret not in resp.text
    assert secret not in server.log()


@pytest.mark.parametrize("body,field", [
    ({"images": ["a"], "pull": "sometimes"}, "pull"),
    ({"images": ["a"], "dry_run": "yes"}, "dry_run"),
    ({"images": ["a"], "timeout": "soon"}, "timeout"),
    ({"images": ["a"], "timeout": -5}, "timeout"),
])
def test_bad_options_are_400(server, body, field):
    resp = server.pull(body)
    assert resp.status_code == 400 and resp.json()["field"] == field
