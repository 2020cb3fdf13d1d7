"""The differential test of image references: inputs, Docker's reading of them, the comparison.

Docker's reading comes from ``tests/refdiff`` (Go, built against Debian's copy
of distribution/reference 2.8, the package dockerd 20.10 parses image names
with). ``compare`` runs it once over every input and says, input by input,
whether puller's parser agrees, differs deliberately (IPv6 hosts, an upper-case
first component as a host; see ``plugins/module_utils/_reference.py``), or
diverges.
"""

import json
import random
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "refdiff" / "build.sh"
GO_PACKAGE = Path("/usr/share/gocode/src/github.com/docker/distribution/reference")
PLACEHOLDER_HOST = "deliberate.example"

# A Go interpreted string literal, a raw one, and the one expression the tests
# build long names with: strings.Repeat("a/", 128) + "a:tag".
_GO_STRING = r'"(?:[^"\\\n]|\\.)*"'
_GO_LITERAL_RE = re.compile(r'strings\.Repeat\((%s),\s*(\d+)\)(?:\s*\+\s*(%s))?|(%s)|`([^`]*)`'
                            % (_GO_STRING, _GO_STRING, _GO_STRING))
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}
_GO_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)")


def _go_unquote(literal):
    def one(m):
        e = m.group(1)
        if e[0] in "xuU":
            return chr(int(e[1:], 16))
        if e[0].isdigit():
            return chr(int(e, 8))
        return _GO_ESCAPES[e]
    return _GO_ESCAPE_RE.sub(one, literal[1:-1])


def go_test_literals(package=GO_PACKAGE):
    """Every string in the package's own ``*_test.go``: its test inputs (and the rest, also inputs)."""
    found = []
    for path in sorted(package.glob("*_test.go")):
        for m in _GO_LITERAL_RE.finditer(path.read_text()):
            if m.group(1):
                text = _go_unquote(m.group(1)) * int(m.group(2)) + (_go_unquote(m.group(3)) if m.group(3) else "")
            elif m.group(4):
                text = _go_unquote(m.group(4))
            else:
                text = m.group(5)
            found.append(text)
    return list(dict.fromkeys(found))


D64, D96, D128 = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4", "0" * 96, "f" * 128
REAL_WORLD = [
    "busybox", "busybox:1.36", "ubuntu:22.04", "library/nginx:1.25-alpine", "docker.io/library/redis:7",
    "index.docker.io/library/alpine:3.19", "bitnami/postgresql:16.1.0-debian-11-r15", "grafana/grafana-oss",
    "gcr.io/distroless/static-debian12:nonroot", "gcr.io/google-containers/pause:3.2",
    "us-docker.pkg.dev/my-project/my-repo/app:v1", "europe-west1-docker.pkg.dev/p/r/img@sha256:" + D64,
    "quay.io/prometheus/node-exporter:v1.7.0", "quay.io/coreos/etcd:v3.5.11", "quay.io/jetstack/cert-manager-controller",
    "ghcr.io/fluxcd/source-controller:v1.2.3", "ghcr.io/open-telemetry/opentelemetry-collector-releases/opentelemetry"
    "-collector-contrib:0.91.0", "registry.k8s.io/pause:3.9", "registry.k8s.io/kube-apiserver:v1.29.0",
    "registry.k8s.io/ingress-nginx/controller:v1.9.5@sha256:" + D64, "k8s.gcr.io/coredns/coredns:v1.8.6",
    "mcr.microsoft.com/dotnet/aspnet:8.0", "public.ecr.aws/docker/library/busybox:stable",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/service:2024.01.15",
    "myregistry.azurecr.io/samples/hello-world:latest", "registry.gitlab.com/group/sub-group/project/image:main",
    "nvcr.io/nvidia/cuda:12.3.1-base-ubuntu22.04", "docker.elastic.co/elasticsearch/elasticsearch:8.11.3",
    "localhost:5000/myapp", "localhost:5000/team/myapp:dev", "localhost/app", "localhost:5000/a/b/c/d:e",
    "127.0.0.1:5000/app:1", "10.0.0.12:443/infra/proxy:v2", "192.168.1.100:5000/library/ubuntu",
    "registry.internal:8443/ns/app", "harbor.example.com/proj/app:1.0.0_rc1", "my_registry/app",
    "nginx@sha256:" + D64, "nginx:1.25@sha256:" + D64, "alpine@sha512:" + D128, "alpine@sha384:" + D96,
    "alpine@sha256:" + D64.upper(), "alpine@md5:d41d8cd98f00b204e9800998ecf8427e", "Ubuntu", "ubuntu:Latest",
    "ubuntu:22.04 ", " ubuntu", "ubuntu:", "ubuntu@", "docker.io/ubuntu", "docker.io", "https://gcr.io/app",
    "[::1]:5000/app:1", "[2001:db8::1]/team/app", "LOCALHOST/app", "MyRegistry/app", "Reg.Example.COM/app",
    "r_e.example.io/app", "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4",
]

_HOSTS = ["", "", "", "", "", "", "docker.io", "index.docker.io", "localhost", "localhost:5000", "gcr.io", "quay.io",
          "registry.k8s.io", "127.0.0.1:5000", "10.1.2.3", "reg.example.com", "Reg.Example.COM:8443",
          "my-registry.internal:5000", "xn--bcher-kva.example", "example:5000", "docker.io:443", "a.b",
          "[::1]:5000", "[fe80::1]", "[2001:db8::42]:443", "[ab]", "LOCALHOST", "Registry", "myHost",
          "r_e.example.io", "reg_1", "a__b.c", "h-.example", "-h.example", "host:0", "host:65536", "host:x"]
_SEPARATORS = [".", "_", "__", "-", "--", "---"]
_ODD = [".", "_", "__", "___", "-", "/", "//", ":", "@", "+", "[", "]", " ", "\t", "\n", "\x00", "A", "Z", "é",
        "ü", "ß", "İ", "\u212a", "ı", "\uff21", "\u0663", "\u00b2", "\u200b", "😀"]
_ALGORITHMS = ["sha256", "sha256", "sha384", "sha512", "SHA256", "Sha512", "md5", "sha1", "sha256+b64",
               "invaliddigest", "blake3", "multihash+base58", "sha256.x", "a", "s2"]
_HEX_LENGTHS = [64, 64, 96, 128, 31, 32, 40, 63, 65, 95, 97, 127, 129, 256]
_WORD = "abcdefghijklmnopqrstuvwxyz0123456789"
_TAGCHARS = _WORD + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_.-"


def _component(rnd):
    out = "".join(rnd.choice(_WORD) for _i in range(rnd.randint(1, 10)))
    for _i in range(rnd.choice([0, 0, 1, 2])):
        out += rnd.choice(_SEPARATORS) + "".join(rnd.choice(_WORD) for _i in range(rnd.randint(1, 6)))
    return out


def _tag(rnd):
    length = rnd.choice([1, 3, 6, 6, 12, 12, 20, 127, 128, 129])
    return rnd.choice(_TAGCHARS[:-2]) + "".join(rnd.choice(_TAGCHARS) for _i in range(length - 1))


def _digest(rnd):
    if rnd.random() < 0.5:  # one the daemon can verify
        algorithm = rnd.choice(["sha256", "sha384", "sha512"])
        length = {"sha256": 64, "sha384": 96, "sha512": 128}[algorithm]
    else:
        algorithm, length = rnd.choice(_ALGORITHMS), rnd.choice(_HEX_LENGTHS)
    hexits = "".join(rnd.choice("0123456789abcdef") for _i in range(length))
    case = rnd.random()
    if case < 0.1:
        hexits = hexits.upper()
    elif case < 0.15:
        hexits = hexits[:-1] + "G"
    return algorithm + ":" + hexits


def _valid(rnd):
    host = rnd.choice(_HOSTS)
    path = "/".join(_component(rnd) for _i in range(rnd.choice([1, 1, 2, 2, 3, 4])))
    text = host + "/" + path if host else path
    if rnd.random() < 0.5:
        text += ":" + _tag(rnd)
    if rnd.random() < 0.3:
        text += "@" + _digest(rnd)
    return text


def _sized(rnd):
    """A name whose normalised length is 254, 255 or 256: the limit counts docker.io/library/."""
    host, prefix = rnd.choice([("", "docker.io/library/"), ("ns/", "docker.io/"), ("localhost:5000/", ""),
                               ("docker.io/", "docker.io/library/"), ("r_e.io/", "")])
    want = rnd.choice([254, 255, 256]) - len(prefix) - len(host)
    body = ("abcdefghi/" * 30)[:want - 1] + "z"
    text = host + body.replace("//", "/a")
    return text + (":" + _tag(rnd) if rnd.random() < 0.3 else "")


def _mutate(rnd, text):
    if not text:
        return rnd.choice(_ODD)
    i = rnd.randrange(len(text) + 1)
    kind = rnd.randrange(12)
    if kind == 0 and i < len(text):  # flip the case of one character
        return text[:i] + text[i].swapcase() + text[i + 1:]
    if kind == 1:  # a non-ASCII letter or another odd character
        return text[:i] + rnd.choice(_ODD) + text[i:]
    if kind == 2:  # an underscore in the first component
        j = rnd.randrange(max(1, text.find("/") if "/" in text else len(text)))
        return text[:j] + "_" + text[j + 1:]
    if kind == 3 and i < len(text):
        return text[:i] + text[i + 1:]
    if kind == 4 and i < len(text):
        return text[:i] + text[i] * rnd.randint(2, 3) + text[i + 1:]
    if kind == 5:  # empty components
        return rnd.choice(["/" + text, text + "/", text.replace("/", "//", 1), text.replace(".", "..", 1)])
    if kind == 6:
        return text.replace(rnd.choice(["/", ".", "-", "_"]), rnd.choice(_SEPARATORS + ["/", ":", "@", ""]), 1)
    if kind == 7:  # a port, good or bad
        first, sep, rest = text.partition("/")
        port = rnd.choice([":5000", ":0", ":65536", ":", ":x", ":5000:1", ":99999999999"])
        return first + port + sep + rest if sep else first + port + "/" + rest + "app"
    if kind == 8:  # 64 hex digits, as a whole or as a part
        hexits = "".join(rnd.choice("0123456789abcdef") for _i in range(rnd.choice([63, 64, 64, 65])))
        return rnd.choice([hexits, hexits.upper(), hexits + ":" + _tag(rnd), "ns/" + hexits, text + hexits])
    if kind == 9:
        return text.split("@")[0] + "@" + _digest(rnd)
    if kind == 10:
        return text.split(":")[0] + ":" + _tag(rnd) + rnd.choice(["", "", rnd.choice(_ODD)])
    return text + rnd.choice([":", "@", ":" + _tag(rnd) + ":" + _tag(rnd), "@" + _digest(rnd) + "@"])


def generated(count, seed=20):
    """``count`` near-valid references from a fixed seed: valid ones, and mutations of them."""
    rnd = random.Random(seed)
    out = []
    while len(out) < count:
        text = _sized(rnd) if rnd.random() < 0.05 else _valid(rnd)
        for _i in range(rnd.choice([0, 0, 0, 1, 1, 1, 2, 3])):
            text = _mutate(rnd, text)
        out.append(text)
    return out


def tag_fields(count, seed=21):
    """Values for the request's ``tag`` field: tags, digests, and their near misses."""
    rnd = random.Random(seed)
    out = []
    while len(out) < count:
        value = _digest(rnd) if rnd.random() < 0.5 else _tag(rnd)
        if rnd.random() < 0.4 and value:
            i = rnd.randrange(len(value))
            value = value[:i] + rnd.choice(_ODD + ["sha256:", "@", "A"]) + value[i + 1:]
        out.append(value)
    return out


class Docker:
    """The refdiff program: one process reads every input."""

    def __init__(self, workdir):
        self.binary = Path(workdir) / "refdiff"
        proc = subprocess.run(["bash", str(BUILD), str(self.binary)], capture_output=True, text=True, timeout=300,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError("cannot build tests/refdiff:\n" + proc.stderr)

    def read(self, items):
        """Each item a reference string or an ``{"image", "tag"}`` pair; Docker's readings, in order."""
        data = "".join(json.dumps(item) + "\n" for item in items)
        proc = subprocess.run([str(self.binary)], input=data, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        out = [json.loads(line) for line in proc.stdout.splitlines()]
        assert len(out) == len(items)
        return out


def _view(ref):
    return {"domain": ref.domain, "path": ref.path, "tag": ref.tag or "", "digest": ref.digest or ""}


def python_reading(module, item):
    """Our reading in Docker's shape: ``parse_reference`` for a string, ``resolve`` for an image/tag pair."""
    try:
        if isinstance(item, dict):
            return _view(module.resolve(item["image"], item["tag"]))
        return _view(module.parse_reference(item))
    except module.InvalidReference as exc:
        return {"error": str(exc)}
    except Exception as exc:  # pylint: disable=broad-except  # a crash is a divergence too
        return {"error": "crash", "crash": repr(exc)}


_IPV6_HOST_RE = re.compile(r"\[[a-fA-F0-9:]+\](?::[0-9]+)?")
_UPPER_HOST_RE = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])")


def deliberate_host(text, ours):
    """The first component, when our reading took it for a host by one of the two deliberate rules."""
    if not isinstance(text, str):
        return None
    first, sep, _rest = text.partition("/")
    if not sep or "error" in ours or ours["domain"] != first:
        return None
    if _IPV6_HOST_RE.fullmatch(first):
        return first
    if _UPPER_HOST_RE.fullmatch(first) and first.lower() != first:
        return first
    return None


def compare(module, inputs, docker):
    """``{"inputs", "agree", "deliberate", "divergences": [(input, ours, docker's)]}``.

    An input is a reference (``parse_reference`` against ParseNormalizedNamed)
    or an ``{"image", "tag"}`` pair (``resolve`` against dockerd's reading of a
    pull's two parameters).

    A deliberate difference counts only when Docker refuses the reference, our
    host is exactly its first component under one of the two rules, and Docker
    reads the rest exactly as we do once that host is a plain one: the rules
    change the host and nothing else.
    """
    ours = [python_reading(module, text) for text in inputs]
    substituted = {}
    for text, mine in zip(inputs, ours):
        if deliberate_host(text, mine):
            substituted[text] = PLACEHOLDER_HOST + "/" + text.partition("/")[2]
    readings = docker.read(list(inputs) + list(substituted.values()))
    theirs, behind = readings[:len(inputs)], dict(zip(substituted, readings[len(inputs):]))
    result = {"inputs": len(inputs), "agree": 0, "deliberate": 0, "divergences": []}
    for text, mine, docker_reads in zip(inputs, ours, theirs):
        if mine == docker_reads or ("error" in mine and "error" in docker_reads and "crash" not in mine):
            result["agree"] += 1
        elif ("error" in docker_reads and isinstance(text, str) and text in substituted
              and behind[text] == dict(mine, domain=PLACEHOLDER_HOST)):
            result["deliberate"] += 1
        else:
            result["divergences"].append((text, mine, docker_reads))
    return result


def sent(module, inputs, docker):
    """What the engine sends for each reference we accept (``ref.name`` and
    ``ref.pull_tag``, the daemon's two pull parameters) must read, in Docker,
    as the reference we took it for: else the registry we chose (allow-list,
    mirrors, credentials) would not be the daemon's. ``(checked, mismatches)``."""
    pairs, expected = [], []
    for text in inputs:
        mine = python_reading(module, text)
        if "error" in mine or not mine["domain"] or deliberate_host(text, mine):
            continue  # refused; no registry (resolve refuses it); 2.8 refuses the deliberate hosts
        ref = module.parse_reference(text)
        pairs.append({"image": ref.name, "tag": ref.pull_tag})
        expected.append(dict(mine, tag="" if ref.digest else ref.pull_tag))
    readings = docker.read(pairs)
    return len(pairs), [(p, e, r) for p, e, r in zip(pairs, expected, readings) if e != r]
