import re

import pytest
from hypothesis import given, strategies as st

from puller.core._reference import InvalidReference, digest_error, parse_reference, resolve

DIGEST = "sha256:" + "ab" * 32
SHA384 = "sha384:" + "cd" * 48
SHA512 = "sha512:" + "ef" * 64
HEX64 = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


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


# Each class below is a way the parser once disagreed with Docker's own
# (distribution/reference 2.8, ParseNormalizedNamed); the differential test in
# tests/integration/test_reference_docker.py compares the two on many more.
@pytest.mark.parametrize("text", [
    "a@md5:" + "0" * 32,  # an algorithm go-digest does not know
    "a@sha256+b64:" + "0" * 64,
    "a@invaliddigest:" + "0" * 64,
    "a@SHA256:" + "ab" * 32,  # algorithms are lower case
    "a@Sha512:" + "ef" * 64,
    "a@sha384:" + "cd" * 32,  # each algorithm has its own length
    "a@sha384:" + "cd" * 64,
    "a@sha512:" + "ef" * 48,
    "a@sha512:" + "EF" * 64,  # lower-case hex only
    "a@sha256:" + "ab" * 33,
])
def test_digests_are_what_the_daemon_can_verify(text):
    with pytest.raises(InvalidReference, match="digest"):
        parse_reference(text)


@pytest.mark.parametrize("digest", [DIGEST, SHA384, SHA512])
def test_every_verifiable_algorithm_is_accepted(digest):
    assert parse_reference("a@" + digest).digest == digest
    assert digest_error(digest) is None


@pytest.mark.parametrize("text", ["a:tagé", "a:ünicode", "a:\u0663", "a:t\u00b2", "a:\uff21"])
def test_tags_are_ascii(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_a_64_hex_name_is_an_image_id_not_a_repository():
    with pytest.raises(InvalidReference, match="64 hexadecimal"):
        parse_reference(HEX64)
    # Only the bare name: with a tag, a path, or another length it is a name.
    assert parse_reference(HEX64 + ":t").path == "library/" + HEX64
    assert parse_reference("x/" + HEX64).path == "x/" + HEX64
    assert parse_reference(HEX64[:63]).path == "library/" + HEX64[:63]


def test_length_limit_counts_the_normalised_name():
    # 255 characters as written, 273 once docker.io/library/ is prepended.
    text = "a" * 255
    with pytest.raises(InvalidReference, match="255"):
        parse_reference(text)
    assert len(parse_reference("a" * 237).name) == 255
    with pytest.raises(InvalidReference, match="255"):
        parse_reference("a" * 238)
    assert len(parse_reference("x/" + "a" * 243).name) == 255  # docker.io/ only
    with pytest.raises(InvalidReference, match="255"):
        parse_reference("x/" + "a" * 244)
    assert parse_reference("a" * 237 + ":" + "t" * 128).tag == "t" * 128  # the tag does not count


@pytest.mark.parametrize("text,path", [
    ("r_e.example.io/app", "r_e.example.io/app"),
    ("a_b.c/d/e:t", "a_b.c/d/e"),
    ("my__reg.local/app", "my__reg.local/app"),
])
def test_a_first_component_with_a_dot_that_is_not_a_host_is_a_path_on_no_registry(text, path):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.name) == ("", path, path)
    with pytest.raises(InvalidReference, match="no registry") as info:
        resolve(text)  # the daemon cannot pull it: refused before it is asked
    assert info.value.field == "image"


@pytest.mark.parametrize("text,domain", [
    ("reg_1/app", "docker.io"),  # no dot: a Docker Hub namespace, as ever
    ("r-e.example.io/app", "r-e.example.io"),
    ("r_e.example.io:5000/app", None),  # ':' makes it a host; not a host, so not a reference
])
def test_underscores_near_hosts(text, domain):
    if domain is None:
        with pytest.raises(InvalidReference):
            parse_reference(text)
    else:
        assert parse_reference(text).domain == domain


@pytest.mark.parametrize("text,domain,path", [
    # Deliberate, from newer releases; 2.8 refuses all of these.
    ("[::1]:5000/app", "[::1]:5000", "app"),
    ("[fe80::1]/a/b", "[fe80::1]", "a/b"),
    ("[::1]/app:t", "[::1]", "app"),
    ("LOCALHOST/app", "LOCALHOST", "app"),
    ("Registry/app", "Registry", "app"),
    ("myHost:5000/app", "myHost:5000", "app"),  # has ':': a host in 2.8 as well
    ("Foo.example/app", "Foo.example", "app"),  # has '.': likewise
])
def test_deliberate_rules_ipv6_and_upper_case_hosts(text, domain, path):
    ref = parse_reference(text)
    assert (ref.domain, ref.path) == (domain, path)


@pytest.mark.parametrize("text", [
    "[::1]",  # no '/': a Docker Hub name, and '[' is not in one
    "[ab]/app",  # no ':' nor upper case: not taken for a host, so a path, and '[' is not in one
    "[::1]:5000/App",  # the path stays lower case
    "Registry/App",
    "Registry",  # no '/': a Docker Hub name, and not lower case
    "[::g]/app",
    "[]/app",
])
def test_deliberate_rules_are_narrow(text):
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


@pytest.mark.parametrize("image,tag,expect", [
    ("busybox", SHA384, "docker.io/library/busybox@" + SHA384),
    ("busybox", SHA512, "docker.io/library/busybox@" + SHA512),
    ("busybox", "v1.0_rc-2", "docker.io/library/busybox:v1.0_rc-2"),
])
def test_resolve_tag_field_as_the_daemon_reads_it(image, tag, expect):
    assert str(resolve(image, tag)) == expect


@pytest.mark.parametrize("tag", [
    "md5:" + "0" * 32, "SHA256:" + "ab" * 32, "sha384:" + "cd" * 32, "sha512:" + "EF" * 64, "sha256:abc",
    "tagé", "\u0663", ":", "-x",
])
def test_resolve_tag_field_follows_the_digest_and_tag_rules(tag):
    with pytest.raises(InvalidReference) as info:
        resolve("busybox", tag)
    assert info.value.field == "tag"


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
    assert ref.path
    assert ref.domain or "." in ref.path.split("/", 1)[0]  # no host only where Docker sees none
