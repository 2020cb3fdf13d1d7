import re

import pytest
from hypothesis import given, strategies as st

from puller.core._reference import InvalidReference, parse_reference, resolve

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text,name,tag,digest", [
    ("busybox", "docker.io/library/busybox", None, None),
    ("busybox:1.36", "docker.io/library/busybox", "1.36", None),
    ("tom/private-image", "docker.io/tom/private-image", None, None),
    ("index.docker.io/tom/x", "docker.io/tom/x", None, None),
    ("localhost/a", "localhost/a", None, None),
    ("localhost:5000/a/b:t", "localhost:5000/a/b", "t", None),
    ("reg.example.com/a_b/c__d/e-f", "reg.example.com/a_b/c__d/e-f", None, None),
    ("Reg.Example.COM:443/a", "Reg.Example.COM:443/a", None, None),
    ("[::1]:5000/a", "[::1]:5000/a", None, None),
    ("repo@" + DIGEST, "docker.io/library/repo", None, DIGEST),
    ("repo:t@" + DIGEST, "docker.io/library/repo", "t", DIGEST),
])
def test_parse_and_normalise(text, name, tag, digest):
    ref = parse_reference(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)


@pytest.mark.parametrize("text", [
    "", "Busybox", "bad ref", "a/-b", "a//b", "a:", ":tag", "a@sha256:abc", "a@sha256:" + "AB" * 32,
    "a:" + "t" * 129, "a/" * 200 + "b", "reg:5000/UPPER", "a:tag with space",
])
def test_invalid(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_familiar_name():
    assert parse_reference("busybox").familiar_name == "busybox"
    assert parse_reference("tom/x").familiar_name == "tom/x"
    assert parse_reference("localhost:5000/x").familiar_name == "localhost:5000/x"


@pytest.mark.parametrize("image,tag,expect", [
    ("busybox", None, "docker.io/library/busybox:latest"),
    ("busybox", "", "docker.io/library/busybox:latest"),
    ("busybox", "1.36", "docker.io/library/busybox:1.36"),
    ("busybox:1.36", "1.36", "docker.io/library/busybox:1.36"),
    ("busybox:1.36", None, "docker.io/library/busybox:1.36"),
    ("busybox", DIGEST, "docker.io/library/busybox@" + DIGEST),
    ("busybox@" + DIGEST, None, "docker.io/library/busybox@" + DIGEST),
    ("busybox@" + DIGEST, DIGEST, "docker.io/library/busybox@" + DIGEST),
])
def test_resolve(image, tag, expect):
    assert str(resolve(image, tag)) == expect


@pytest.mark.parametrize("image,tag,field", [
    ("busybox:1.36", "1.35", "tag"),
    ("busybox@" + DIGEST, "latest", "tag"),
    ("busybox", "-bad", "tag"),
    ("busybox", 5, "tag"),
    ("bad ref", "latest", "image"),
])
def test_resolve_conflicts_name_the_field(image, tag, field):
    with pytest.raises(InvalidReference) as info:
        resolve(image, tag)
    assert info.value.field == field


def test_pull_tag_prefers_digest():
    assert parse_reference("a:t@" + DIGEST).pull_tag == DIGEST
    assert parse_reference("a").pull_tag == "latest"


# Docker's grammar, restated independently from the spec in distribution's
# reference.go, to check the parser against generated names.
_component = st.from_regex(re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+){0,2}"), fullmatch=True)
_DOMAIN_RE = re.compile(r"[a-z][a-z0-9-]{0,8}[a-z0-9](\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?")
_domain = st.one_of(st.just(""), st.from_regex(_DOMAIN_RE, fullmatch=True))
_tag = st.from_regex(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"), fullmatch=True)


@given(_domain, st.lists(_component, min_size=1, max_size=3), st.one_of(st.none(), _tag))
def test_generated_valid_references_parse(domain, components, tag):
    text = "/".join(components)
    if domain:
        text = domain + "/" + text
    if tag:
        text += ":" + tag
    ref = parse_reference(text)
    assert ref.tag == tag
    assert ref.name.endswith("/".join(components))
    assert str(parse_reference(str(ref))) == str(ref)  # normalised form is a fixed point


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_text_never_crashes(text):
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert ref.path and ref.domain
