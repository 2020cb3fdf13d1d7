import pytest

from puller.core._errors import InvalidRequest
from puller.core._request import MAX_ATTEMPTS, parse_pull_request


def test_seed_request():
    req = parse_pull_request({"concurrency": 10, "retry": 3, "images": [
        {"image": "busybox", "tag": "latest", "project": "p1"},
        {"image": "tom/private-image", "tag": "latest", "project": "p2",
         "auth_config": {"username": "tom", "password": "pw"}}]})
    assert (req.concurrency, req.attempts) == (10, 3)
    assert [s.project for s in req.specs] == ["p1", "p2"]
    assert req.specs[1].auth_config == {"username": "tom", "password": "pw"}
    assert req.specs[0].auth_config == {}


def test_originals_defaults_for_non_positive_numbers():
    req = parse_pull_request({"concurrency": 0, "retry": -1, "images": ["busybox"]})
    assert (req.concurrency, req.attempts) == (1, 3)
    assert parse_pull_request({"retry": 99, "images": ["a"]}).attempts == MAX_ATTEMPTS


def test_strings_and_default_auth():
    req = parse_pull_request({"images": ["busybox:1.36"]}, default_auth={"username": "u", "password": "p"})
    spec = req.specs[0]
    assert (spec.image, spec.tag, str(spec.ref)) == ("busybox:1.36", "1.36", "docker.io/library/busybox:1.36")
    assert spec.auth_config == {"username": "u", "password": "p"}


def test_empty_auth_values_are_dropped():
    req = parse_pull_request({"images": [{"image": "a", "auth_config": {"username": "", "password": None}}]})
    assert req.specs[0].auth_config == {}


@pytest.mark.parametrize("body,field", [
    (None, "body"), ({"images": None}, "images"), ({"images": ["a"] * 3}, "images"),
    ({"images": [{"image": "a", "auth_config": {"password": 1}}]}, "images[0].auth_config.password"),
])
def test_errors_name_the_field(body, field):
    with pytest.raises(InvalidRequest) as info:
        parse_pull_request(body, max_images=2)
    assert info.value.field == field


DIGEST = "sha256:" + "c" * 64


def test_a_digest_pins_the_tag_it_comes_with():
    req = parse_pull_request({"images": [{"image": "origin.example:5000/app/web", "tag": "1.2", "digest": DIGEST},
                                         {"image": "origin.example:5000/app/db:3", "digest": DIGEST},
                                         {"image": "origin.example:5000/app/x@" + DIGEST, "digest": DIGEST},
                                         {"image": "origin.example:5000/app/y", "digest": ""}]})
    web, db, x, y = req.specs
    assert (web.ref.tag, web.ref.digest, web.tag) == ("1.2", DIGEST, "1.2")
    assert str(db.ref) == "origin.example:5000/app/db:3@" + DIGEST and db.tag == "3"
    assert (x.ref.tag, x.ref.digest) == (None, DIGEST)
    assert (y.ref.tag, y.ref.digest) == ("latest", None)


def test_a_preheat_row_is_an_image_as_it_is():
    row = {"image": "origin.example:5000/app/web:1.2", "tag": "1.2", "project": "", "cost": "1.2s", "retried": 1,
           "errmsg": "", "digest": DIGEST, "id": "", "previous_id": "", "status": "pulled", "bytes_copied": 10,
           "blobs_skipped": 0, "site": "site.example:5000"}
    (spec,) = parse_pull_request({"images": [row]}).specs
    assert str(spec.ref) == "origin.example:5000/app/web:1.2@" + DIGEST


@pytest.mark.parametrize("digest, problem", [
    (7, "must be a string"),
    ("sha256:abc", "invalid sha256 digest"),
    ("latest", "invalid digest format"),
    ("sha256:" + "d" * 64, "differs from the digest the image already pins"),
])
def test_a_bad_digest_names_the_field(digest, problem):
    with pytest.raises(InvalidRequest) as caught:
        parse_pull_request({"images": ["a", {"image": "origin.example/app@" + DIGEST, "digest": digest}]})
    assert caught.value.field == "images[1].digest" and problem in caught.value.message
