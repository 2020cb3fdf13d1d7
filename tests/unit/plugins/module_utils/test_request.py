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
