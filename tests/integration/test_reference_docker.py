"""Image references: puller's parser against Docker's own, input by input.

Docker's side is ``tests/refdiff``, built here from Debian's golang-go and
golang-github-docker-distribution-dev (distribution/reference 2.8, what dockerd
20.10 parses image names with); no Go toolchain or package is a failure, not a
skip. Three corpora: the string literals of that package's own ``*_test.go``,
real-world references, and 10 000 generated near-valid ones. The only
differences allowed are the two deliberate rules (IPv6 hosts, an upper-case
first component as a host), and only where 2.8 refuses the reference.

Before the parser followed 2.8 exactly it diverged on about 1 in 8 of the
generated inputs (digests of any algorithm, Unicode tags, 64-hex names, the
length counted before normalisation, ``r_e.example.io/app`` taken for a host).
"""

import subprocess
import sys

import pytest

import refcorpus
from conftest import report
from puller.core import _reference as reference

GENERATED = 10000
HEX64 = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    try:
        return refcorpus.Docker(tmp_path_factory.mktemp("refdiff"))
    except (RuntimeError, OSError) as exc:  # bootstrap.sh installs both; CI without them must fail
        pytest.fail(str(exc))


def _check(ground, docker, name, inputs):
    result = refcorpus.compare(reference, inputs, docker)
    line = "references vs Docker's distribution/reference (%s): %d inputs, %d agree, %d deliberate, %d divergences" % (
        name, result["inputs"], result["agree"], result["deliberate"], len(result["divergences"]))
    print(line)
    report(ground, line)
    shown = "\n".join("%r: ours %s, Docker's %s" % d for d in result["divergences"][:20])
    assert not result["divergences"], shown
    return result


def test_docker_side_is_distribution_2_8(docker):
    out = subprocess.run([str(docker.binary), "-version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("v2.8."), out


def test_the_packages_own_test_inputs(ground, docker):
    literals = refcorpus.go_test_literals()
    assert len(literals) > 300 and "validname@invaliddigest:" + "f" * 64 in literals
    assert "a/" * 127 + "a:tag-puts-this-over-max" in literals  # strings.Repeat expressions too
    _check(ground, docker, "its own tests", literals)


def test_real_world_references(ground, docker):
    result = _check(ground, docker, "real world", refcorpus.REAL_WORLD)
    assert result["deliberate"] == 4  # [::1]:5000/app:1, [2001:db8::1]/team/app, LOCALHOST/app, MyRegistry/app


def first(text):
    return text.split("/")[0] if "/" in text else ""


def normalised_length(reading):
    return len(reading.get("domain", "")) + 1 + len(reading.get("path", "")) if "error" not in reading else 0


def test_generated_near_valid_references(ground, docker):
    inputs = refcorpus.generated(GENERATED)
    readings = docker.read(inputs)
    accepted = sum("error" not in r for r in readings)
    assert GENERATED * 0.25 < accepted < GENERATED * 0.75  # near-valid: many of both kinds
    # Every class the parser once got wrong is in the corpus, many times.
    classes = {
        "unknown or upper-case digest algorithm": lambda t, r: "@" in t and t.rsplit("@", 1)[1].split(":")[0]
        not in ("sha256", "sha384", "sha512"),
        "sha384/sha512 digest": lambda t, r: "@sha384:" in t or "@sha512:" in t,
        "non-ASCII": lambda t, r: not t.isascii(),
        "64 hex digits": lambda t, r: len(t) == 64 and all(c in "0123456789abcdef" for c in t),
        "normalised name near 255": lambda t, r: normalised_length(r) in (254, 255) or "255" in r.get("error", ""),
        "first component with '_' and '.'": lambda t, r: "_" in first(t) and "." in first(t),
        "upper-case letter": lambda t, r: t.lower() != t,
        "port": lambda t, r: ":" in first(t),
        "empty component": lambda t, r: "//" in t or t.endswith("/") or t.startswith("/"),
    }
    for what, test in classes.items():
        count = sum(1 for text, reading in zip(inputs, readings) if test(text, reading))
        assert count >= 20, "%s: %d inputs" % (what, count)
    _check(ground, docker, "%d generated" % GENERATED, inputs)


def test_the_tag_field_as_dockerd_reads_it(ground, docker):
    """A pull's ``tag`` parameter: a digest when go-digest parses it, else a tag."""
    pairs = [{"image": image, "tag": tag} for tag in refcorpus.tag_fields(2000)
             for image in ("busybox", "localhost:5000/a/b")]
    _check(ground, docker, "tag field", pairs)


def test_what_the_engine_sends_is_what_it_checked(ground, docker):
    """The daemon reads ``ref.name`` and ``ref.pull_tag`` as the reference the
    allow-list, the mirror map and the credentials were decided on."""
    checked, mismatches = refcorpus.sent(reference, refcorpus.generated(GENERATED) + refcorpus.REAL_WORLD, docker)
    report(ground, "references sent to the daemon read back as checked: %d, mismatches %d" % (checked, len(mismatches)))
    assert checked > 2000 and not mismatches, mismatches[:10]


@pytest.mark.parametrize("text", ["[::1]:5000/app", "[fe80::1]/a/b:t", "LOCALHOST/app", "Registry/app@sha256:" + "a" * 64])
def test_deliberate_rules_only_where_docker_refuses(docker, text):
    (theirs,) = docker.read([text])
    assert "error" in theirs  # 2.8 refuses them: the rules never read a name 2.8 accepts differently
    assert refcorpus.compare(reference, [text], docker)["deliberate"] == 1


# -- end to end: refused with the field named, before the daemon is asked ------------
DIVERGENT_IMAGES = [
    "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
    "busybox@sha256+b64:" + "a" * 64,
    "busybox@SHA256:" + "a" * 64,
    "busybox@sha512:" + "a" * 96,
    "busybox:tagé",
    HEX64,
    "a" * 238,  # 256 once docker.io/library/ is counted
    "r_e.example.io/app",  # Docker: a path on no registry, which it cannot pull
]
DIVERGENT_TAGS = ["sha384:" + "a" * 64, "md5:d41d8cd98f00b204e9800998ecf8427e", "ünicode"]


@pytest.fixture
def no_daemon_server(start_server, tmp_path):
    """A server whose daemon is absent: a request that got past validation would be a 503."""
    server = start_server("--docker-socket", str(tmp_path / "no-daemon.sock"))
    assert server.pull({"images": ["busybox"]}).status_code == 503
    return server


def test_divergent_inputs_are_400_naming_the_field(no_daemon_server):
    for image in DIVERGENT_IMAGES:
        resp = no_daemon_server.pull({"images": ["busybox", {"image": image}]})
        assert resp.status_code == 400, (image, resp.text)
        assert resp.json()["field"] == "images[1].image", resp.text
    for tag in DIVERGENT_TAGS:
        resp = no_daemon_server.pull({"images": [{"image": "busybox", "tag": tag}]})
        assert resp.status_code == 400 and resp.json()["field"] == "images[0].tag", (tag, resp.text)
    resp = no_daemon_server.pull({"images": [{"image": "busybox", "tag": "sha512:" + "a" * 128}]})
    assert resp.status_code == 503  # a verifiable digest in the tag field goes on to the daemon


@pytest.mark.parametrize("image", [DIVERGENT_IMAGES[i] for i in (0, 4, 5, 7)])
def test_cli_exits_2_on_divergent_references(tmp_path, image):
    proc = subprocess.run([sys.executable, "-m", "puller", "pull", "--docker-socket", str(tmp_path / "none.sock"),
                           "busybox", image], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "images[1]" in proc.stderr
