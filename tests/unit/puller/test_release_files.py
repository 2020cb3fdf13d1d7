"""Release files for ``puller pull -f``: the formats, and files built to hurt the reader."""

import codecs
import json
import io
import sys

import pytest
import yaml

from puller import _release_files
from puller._release_files import images_from_file
from puller.core._errors import InvalidRequest

K8S_POD = "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - {name: x, image: %s}\n"
K8S_DEPLOYMENT = ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n"
                  "        - {name: init, image: init:1}\n      containers:\n        - name: app\n"
                  "          image: app:2\n          command: [sh, -c, 'echo hi']\n")


def _parsers():
    """PyYAML's libyaml parser when it has one, and its pure-Python parser, the fallback."""
    loaders = [yaml.SafeLoader]
    if getattr(yaml, "__with_libyaml__", False):
        loaders.insert(0, yaml.CSafeLoader)
    return loaders


@pytest.fixture(name="parser", params=_parsers(), ids=lambda loader: loader.__name__)
def _parser(request, monkeypatch):
    monkeypatch.setattr(_release_files, "_LOADER", request.param)
    return request.param


def _file(tmp_path, content, name="release"):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return str(path)


def _refused(path):
    with pytest.raises(InvalidRequest) as caught:
        images_from_file(path)
    assert caught.value.field == "-f %s" % path
    assert "\n" not in caught.value.message
    return caught.value.message


def test_the_venv_has_libyaml():
    # Without it a 13 MB compose file takes about 20 times longer to read.
    assert yaml.__with_libyaml__ and _release_files._LOADER is yaml.CSafeLoader


def test_a_list_with_comments_blank_lines_and_repeats(tmp_path):
    path = _file(tmp_path, "# the release\nbusybox:1.36\nlocalhost:5000/team/app:2  # the app\n\n\nbusybox:1.36\n"
                           "reg.example.com/a/b@sha256:%s\n" % ("a" * 64))
    assert images_from_file(path) == ["busybox:1.36", "localhost:5000/team/app:2",
                                      "reg.example.com/a/b@sha256:" + "a" * 64]


@pytest.mark.parametrize("bom,encoding", [
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
])
def test_a_byte_order_mark_is_skipped(tmp_path, bom, encoding):
    assert images_from_file(_file(tmp_path, bom + "busybox:1.36\nalpine:3\n".encode(encoding))) == \
        ["busybox:1.36", "alpine:3"]
    compose = bom + "services:\n  web: {image: nginx:1}\n".encode(encoding)
    assert images_from_file(_file(tmp_path, compose, "compose.yml")) == ["nginx:1"]


@pytest.mark.usefixtures("parser")
def test_a_compose_file_with_anchors_and_merge_keys(tmp_path):
    compose = ("x-version: &version registry.example.com/team/api:7\n"
               "x-base: &base\n  image: base:1\n  restart: always\n"
               "services:\n  web:\n    <<: *base\n    ports: ['80']\n  api:\n    image: *version\n"
               "  db:\n    image: 'postgres:16'\n    command: [postgres, -c, fsync=off]\n"
               "  odd:\n    image: 1.5\n  empty:\n    image:\n  built:\n    build: .\n")
    assert images_from_file(_file(tmp_path, compose)) == ["base:1", "registry.example.com/team/api:7", "postgres:16"]


@pytest.mark.usefixtures("parser")
def test_kubernetes_manifests_every_image_in_every_document(tmp_path):
    text = "# rendered\n---\n" + K8S_DEPLOYMENT + "---\n" + K8S_POD % "side:3" + "---\n# nothing\n---\n" + \
        K8S_POD % "app:2"
    assert images_from_file(_file(tmp_path, text)) == ["init:1", "app:2", "side:3"]


def test_a_yaml_list_of_references(tmp_path):
    assert images_from_file(_file(tmp_path, "- busybox:1.36\n- 'alpine:3'\n- [not, this]\n")) == \
        ["busybox:1.36", "alpine:3"]
    assert images_from_file(_file(tmp_path, "[busybox:1.36, alpine:3]\n")) == ["busybox:1.36", "alpine:3"]


@pytest.mark.usefixtures("parser")
def test_one_invalid_document_is_named_not_read_as_lines(tmp_path):
    text = K8S_POD % "a:1" + "---\n" + K8S_POD % "b:1" + "---\nkind: Pod\nspec: [containers:\n  - image: c:1\n"
    message = _refused(_file(tmp_path, text))
    assert message.startswith("document 3, line ") and "invalid reference" not in message, message
    assert int(message.split("line ")[1].split(":")[0]) > 12  # a line of the third document


@pytest.mark.usefixtures("parser")
def test_billion_laughs_is_refused_without_expanding(tmp_path):
    lines = ['a0: &a0 ["lol"]'] + ["a%d: &a%d [%s]" % (n, n, ", ".join(["*a%d" % (n - 1)] * 10)) for n in range(1, 10)]
    lines.append("services: {web: {image: busybox}}")
    message = _refused(_file(tmp_path, "\n".join(lines) + "\n"))
    assert message.startswith("document 1, line 7: ") and "aliases expand to more than" in message, message


def test_aliases_that_stay_small_are_fine(tmp_path):
    base = "x-env: &env {A: '1', B: '2'}\nservices:\n" + "".join(
        "  s%d:\n    image: app:%d\n    environment: *env\n" % (n, n % 3) for n in range(500))
    assert images_from_file(_file(tmp_path, base)) == ["app:0", "app:1", "app:2"]


@pytest.mark.parametrize("text,problem", [
    ("a: &a [*a]\n", "alias *a inside the node it names"),
    ("a: &a {b: {c: *a}}\n", "alias *a inside the node it names"),
    ("services: {web: {image: *nowhere}}\n", "undefined alias *nowhere"),
    ("x: &v busybox\n---\nservices: {web: {image: *v}}\n", "undefined alias *v"),  # anchors are per document
])
@pytest.mark.usefixtures("parser")
def test_aliases_that_cannot_be_read(tmp_path, text, problem):
    assert problem in _refused(_file(tmp_path, text))


@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000 + "\n",
    "{a: " * 5000 + "x" + "}" * 5000 + "\n",
    "".join("  " * n + "k%d:\n" % n for n in range(150)) + "  " * 150 + "image: deep:1\n",
    "".join("  " * n + "-\n" for n in range(150)),
])
@pytest.mark.usefixtures("parser")
def test_deep_nesting_is_refused(tmp_path, text):
    message = _refused(_file(tmp_path, text))
    assert message.startswith("document 1, line ") and "nest" in message, message


def test_binary_garbage(tmp_path):
    noise = bytes((n * 7919 + 13) % 256 for n in range(4096))
    assert _refused(_file(tmp_path, noise)).startswith("not UTF-8 text: byte 0x")
    message = _refused(_file(tmp_path, b"busybox:1.36\nab\x00\x01cd\n"))
    assert message == "binary data, not text: control character 0x00 at line 2 (UTF-16 needs a byte-order mark)"
    assert "control character 0x1b at line 1" in _refused(_file(tmp_path, b"\x1b[31mbusybox\n"))


def test_latin1_text(tmp_path):
    latin1 = "# caf\u00e9 release\nbusybox:1.36\n".encode("latin-1")
    assert _refused(_file(tmp_path, latin1)) == "not UTF-8 text: byte 0xe9 at line 1"
    assert _refused(_file(tmp_path, codecs.BOM_UTF16_LE + b"a\x00\x00\xdc")).startswith("not UTF-16-LE text")


def test_a_big_compose_file(tmp_path):
    services = "".join("  svc-%06d:\n    image: registry.example.com:5000/team/app-%04d:1.2.3\n"
                       "    restart: unless-stopped\n    ports: [\"8080:80\"]\n    environment:\n"
                       "      LOG_LEVEL: info\n" % (n, n % 500) for n in range(40000))
    path = _file(tmp_path, "services:\n" + services)
    images = images_from_file(path)
    assert len(images) == 500 and images[0] == "registry.example.com:5000/team/app-0000:1.2.3"
    assert images[-1] == "registry.example.com:5000/team/app-0499:1.2.3"


def test_the_format_is_decided_by_the_first_line(tmp_path):
    # References never hold spaces nor end in a colon; YAML keys do.
    assert images_from_file(_file(tmp_path, "\n# c\nlocalhost:5000/a:1\n[::1]:5000/b\n")) == \
        ["localhost:5000/a:1", "[::1]:5000/b"]
    assert _refused(_file(tmp_path, "services:\n  web:\n    build: .\n")) == \
        "no image references (no image: values in its YAML)"
    assert _refused(_file(tmp_path, '--- "busybox:1.36"\n')) == \
        "document 1, line 1: a single value, not a mapping or a list"


@pytest.mark.parametrize("content", ["", "\n\n# only comments\n   \n", b"\xef\xbb\xbf"])
def test_nothing_to_pull(tmp_path, content):
    assert _refused(_file(tmp_path, content)) == "no image references"


def test_unreadable_and_too_large(tmp_path, monkeypatch):
    assert _refused(str(tmp_path / "missing.txt")) == "cannot read it: No such file or directory"
    assert _refused(str(tmp_path)) == "cannot read it: Is a directory"
    monkeypatch.setattr(_release_files, "MAX_BYTES", 1 << 20)
    assert _refused(_file(tmp_path, "busybox\n" * 200000)) == "larger than 1 MiB"


def test_stdin_is_read_as_bytes(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(codecs.BOM_UTF8 + (K8S_POD % "a:1").encode())))
    assert images_from_file("-") == ["a:1"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\n")))
    with pytest.raises(InvalidRequest) as caught:
        images_from_file("-")
    assert caught.value.field == "-f -" and caught.value.message == "not UTF-8 text: byte 0xe9 at line 1"


DIGEST = "sha256:" + "e" * 64


def test_a_preheat_report_gives_images_and_their_digests(tmp_path):
    from puller._release_files import images_from_report

    report = {"success": [{"image": "origin:5000/app/web", "tag": "1.2", "project": "web", "digest": DIGEST,
                           "bytes_copied": 5, "status": "pulled"}],
              "failure": [{"image": "origin:5000/app/db", "tag": "3", "project": "", "digest": "",
                           "errmsg": "manifest unknown"}],
              "startAt": "2026-12-02T03:00:00Z", "cost": "2s"}
    path = tmp_path / "preheat.json"
    path.write_text(json.dumps(report))
    assert images_from_report(str(path)) == [
        {"image": "origin:5000/app/web", "tag": "1.2", "project": "web", "digest": DIGEST},
        {"image": "origin:5000/app/db", "tag": "3", "project": ""}]  # not at the site: pulled as usual


@pytest.mark.parametrize("content, problem", [
    ("{", "not JSON"),
    ("[1]", "not a report"),
    ('{"success": []}', "not a report"),
    ('{"success": [], "failure": []}', "no rows"),
    ('{"success": [{"tag": "1"}], "failure": []}', "success[0] is not a row with an image"),
    ('{"success": [{"image": "a"}], "failure": []}', "success[0] (a) has no digest"),
])
def test_what_is_no_preheat_report_is_named(tmp_path, content, problem):
    from puller._release_files import images_from_report

    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidRequest) as caught:
        images_from_report(str(path))
    assert caught.value.field == "--digests %s" % path and problem in caught.value.message
