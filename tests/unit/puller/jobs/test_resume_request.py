"""What the store keeps of a request: everything that shapes a pull, no secret."""

import json

from puller.core._request import parse_pull_request
from puller.jobs.resume import STORED_IMAGE_FIELDS, STORED_REQUEST_FIELDS, needs_auth, public_body
from puller.server.openapi import _IMAGE, _PULL_REQUEST

SECRET = "S3cret-in-the-request"
AUTH = {"username": "u", "password": SECRET}
BODY = {
    "images": [
        {"image": "reg.example.com/app", "tag": "1.0", "project": "web", "platform": "linux/arm64",
         "auth_config": AUTH},
        {"image": "docker.io/library/busybox", "tag": "latest", "digest": "sha256:" + "0" * 64},
        "quay.io/org/tool:2",
    ],
    "platform": "linux/amd64/v2",
    "mirrors": {"docker.io": ["mirror.example.com:5000"]},
    "mirror_auth": {"mirror.example.com:5000": AUTH},
    "pull": "missing",
    "dry_run": True,
    "retry": 5,
    "timeout": "90s",
    "concurrency": 4,
    "unknown": "dropped",
}


PREHEAT = {"images": ["reg.example.com/app:1.0"], "preheat": {"to": "site.example.com:5000"}}


def test_every_field_that_shapes_a_pull_is_kept():
    kept = public_body(BODY)
    shaping = [k for k in STORED_REQUEST_FIELDS if k != "preheat"]
    assert {k: kept[k] for k in shaping} == {k: BODY[k] for k in shaping}
    assert public_body(PREHEAT) == PREHEAT  # where a preheat copies to
    assert kept["images"][0] == {"image": "reg.example.com/app", "tag": "1.0", "project": "web",
                                 "platform": "linux/arm64", "had_credentials": True}
    assert kept["images"][1:] == BODY["images"][1:]


def test_no_secret_and_nothing_unknown_is_kept():
    kept = public_body(BODY)
    assert SECRET not in json.dumps(kept)
    assert "mirror_auth" not in kept and "unknown" not in kept and "auth_config" not in kept["images"][0]


def test_the_kept_request_parses_to_the_same_pull_but_for_credentials():
    def shape(request):
        specs = [(s.ref, s.tag, s.project, s.platform, tuple(m.host for m in s.mirrors)) for s in request.specs]
        return specs, request.concurrency, request.attempts, request.policy, request.dry_run, request.deadline

    given = parse_pull_request(BODY, allow_request_mirrors=True)
    again = parse_pull_request(public_body(BODY), allow_request_mirrors=True)
    assert shape(again) == shape(given)
    assert given.specs[0].auth_config and not again.specs[0].auth_config
    assert again.specs[0].platform == "linux/arm64" and again.specs[1].platform == "linux/amd64/v2"
    assert all(not m.auth_config for s in again.specs for m in s.mirrors)


def test_images_that_had_credentials_are_known_after_the_store():
    kept = public_body(BODY)
    assert [needs_auth(kept, i) for i in range(3)] == [True, False, False]
    assert [needs_auth(BODY, i) for i in range(3)] == [True, False, False]


def test_every_field_of_the_api_is_either_kept_or_a_secret():
    """A field added to the API must be added to the allow-list, or named a secret here."""
    assert set(_PULL_REQUEST["properties"]) == {"images", "mirror_auth"} | set(STORED_REQUEST_FIELDS)
    assert set(_IMAGE["properties"]) == {"auth_config"} | set(STORED_IMAGE_FIELDS)
