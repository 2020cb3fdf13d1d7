"""The seam's rules for where a runtime lists a reference (pure logic)."""

from puller.core._reference import resolve
from puller.core._runtime import held, socket_url, tag_key

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
PINNED = resolve("origin.example:5000/app/web:1.2")._replace(digest=DIGEST)


def test_a_pinned_tag_is_held_where_the_tag_names_the_pinned_content():
    images = {"origin.example:5000/app/web:1.2": "id-1", "site.example:5000/app/web@" + DIGEST: "id-1"}
    assert held(PINNED, images) == "id-1"
    assert tag_key(PINNED) == "origin.example:5000/app/web:1.2"


def test_a_pinned_tag_on_other_content_is_not_held():
    moved = {"origin.example:5000/app/web:1.2": "id-old", "site.example:5000/app/web@" + DIGEST: "id-1"}
    assert held(PINNED, moved) is None  # the tag points elsewhere: pull, then move the tag
    untagged = {"origin.example:5000/app/web@" + DIGEST: "id-1"}
    assert held(PINNED, untagged) is None  # the content is there, the tag is not: it still needs its tag
    other_digest = {"origin.example:5000/app/web:1.2": "id-1", "site.example:5000/app/web@" + OTHER: "id-1"}
    assert held(PINNED, other_digest) is None


def test_a_runtime_that_cannot_tag_holds_a_pinned_tag_by_its_digest():
    images = {"origin.example:5000/app/web@" + DIGEST: "id-1"}
    assert held(PINNED, images, can_tag=False) == "id-1"
    assert tag_key(PINNED, can_tag=False) == "origin.example:5000/app/web@" + DIGEST


def test_plain_references_are_listed_as_they_are():
    tagged, pinned = resolve("origin.example:5000/app/web:1.2"), resolve("origin.example:5000/app/web@" + DIGEST)
    assert held(tagged, {"origin.example:5000/app/web:1.2": "id-1"}) == "id-1"
    assert held(pinned, {"origin.example:5000/app/web@" + DIGEST: "id-2"}) == "id-2"
    assert tag_key(tagged) == "origin.example:5000/app/web:1.2"


def test_socket_url():
    assert socket_url("/run/x.sock", "unix:///d") == "unix:///run/x.sock"
    assert socket_url(None, "unix:///d") == "unix:///d"
    assert socket_url("tcp://h:2376", "unix:///d") == "tcp://h:2376"
