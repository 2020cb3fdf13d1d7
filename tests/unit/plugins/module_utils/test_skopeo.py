"""Pure logic of the preheat copy: skopeo's command line, auth files, TLS rules, output and errors.

The recorded outputs under ``skopeo/`` are skopeo 1.9.3's own, from copies
between two loopback registries: ``index-first`` copies an index of one image
of two 8 MiB layers (stdout on a terminal: progress bars), ``index-again``
copies it again (every layer at the site already), ``image-pipe`` copies an
image of three layers with stdout on a pipe, ``missing`` asks for a tag that
does not exist. (The terminal's ``\r\n`` are stored as ``\n``, as the
collection's files must be; ``LineBuffer`` drops a ``\r`` either way.)
"""

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from puller.core._errors import PermanentPullError, TransientPullError
from puller.core._redact import MASK
from puller.core._runtime_site import SiteRuntime
from puller.core._skopeo import (PASSED_ENV, Workspace, auth_document, auth_entry, child_env, copy_command,
                                 tls_verify)
from puller.core._skopeo_output import (MAX_MESSAGE, CopyOutput, LineBuffer, classify, clean_message, log_record,
                                        parse_size)

RECORDED = Path(__file__).parent / "skopeo"
PASSWORD = "S3cret-Site-Pa55"


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def feed(output, name, stream, chunk=7):
    """The recorded bytes of ``name.stream``, fed in small pieces as a pipe would give them."""
    buffer, alive = LineBuffer(), 0
    data = (RECORDED / ("%s.%s" % (name, stream))).read_bytes()
    for i in range(0, len(data), chunk):
        for line in buffer.feed(data[i:i + chunk]):
            alive += bool(output.stderr_line(line) if stream == "stderr" else output.stdout_line(line))
    for line in buffer.rest():
        output.stderr_line(line) if stream == "stderr" else output.stdout_line(line)
    return alive


# -- TLS ----------------------------------------------------------------------------------
@pytest.mark.parametrize("host, insecure, expected", [
    ("localhost:5000", (), "false"),
    ("127.0.0.1:5000", (), "false"),
    ("[::1]:5000", (), "false"),
    ("localhost", (), "false"),
    ("registry.example.com", (), "true"),
    ("registry.example.com:5000", (), "true"),
    ("docker.io", (), "true"),
    ("10.0.0.5:5000", ("10.0.0.5:5000",), "false"),
    ("10.0.0.5:5000", ("10.0.0.5",), "false"),  # a host named insecure, any port, as dockerd reads it
    ("10.0.0.5:5001", ("10.0.0.5:5000",), "true"),
    ("localhost.example.com", (), "true"),
])
def test_plain_http_only_for_loopback_and_insecure_hosts(host, insecure, expected):
    assert tls_verify(host, insecure) == expected


# -- auth files ---------------------------------------------------------------------------
def test_auth_entries():
    assert auth_entry({"username": "u", "password": "p:w"}) == {"auth": _b64("u:p:w")}
    assert auth_entry({"auth": _b64("u:p")}) == {"auth": _b64("u:p")}
    assert auth_entry({"identitytoken": "tok"}) == {"auth": _b64("<token>:"), "identitytoken": "tok"}
    assert auth_entry({"username": "u", "identitytoken": "tok"}) == {"auth": _b64("u:"), "identitytoken": "tok"}
    assert auth_entry({}) is None and auth_entry(None) is None
    assert auth_entry({"email": "a@b", "serveraddress": "x"}) is None
    with pytest.raises(PermanentPullError) as caught:
        auth_entry({"registrytoken": "bearer-token-value"})
    assert "registrytoken" in caught.value.message and "bearer-token-value" not in caught.value.message


def test_auth_documents_name_the_registry_and_only_its_own_credentials():
    auth = {"username": "u", "password": "p"}
    assert auth_document("localhost:5000", auth) == {"auths": {"localhost:5000": {"auth": _b64("u:p")}}}
    assert auth_document("docker.io", dict(auth, serveraddress="https://index.docker.io/v1/")) == {
        "auths": {"docker.io": {"auth": _b64("u:p")}}}
    # credentials naming another registry are not this one's
    assert auth_document("localhost:5000", dict(auth, serveraddress="other.example.com")) == {"auths": {}}
    assert auth_document("localhost:5000", None) == {"auths": {}}  # an empty file: no host file is read instead


def test_workspace_is_private_and_removed():
    environ = {"PATH": "/usr/bin", "HOME": "/home/someone", "PULLER_TOKEN": "server-secret", "LANG": "C.UTF-8"}
    with Workspace("localhost:5000", {"username": "u", "password": PASSWORD}, "site:5000", None,
                   environ=environ) as ws:
        assert stat.S_IMODE(os.stat(ws.dir).st_mode) == 0o700
        for path in (ws.source_auth, ws.dest_auth):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.path.dirname(path) == ws.dir
        assert json.loads(Path(ws.source_auth).read_text()) == {
            "auths": {"localhost:5000": {"auth": _b64("u:" + PASSWORD)}}}
        assert json.loads(Path(ws.dest_auth).read_text()) == {"auths": {}}
        env = ws.env()
        assert env["HOME"] == env["XDG_RUNTIME_DIR"] == ws.dir
        assert env["XDG_CONFIG_HOME"].startswith(ws.dir) and env["DOCKER_CONFIG"].startswith(ws.dir)
        assert env["XDG_DATA_HOME"] == "/home/someone/.local/share"  # the blob info cache stays the user's
        assert "PULLER_TOKEN" not in env and env["LANG"] == "C.UTF-8"
        assert not any(PASSWORD in value for value in env.values())
        assert ws.digest() is None  # skopeo has written none yet
        Path(ws.digestfile).write_text("sha256:" + "a" * 64 + "\n")
        assert ws.digest() == "sha256:" + "a" * 64
        where = ws.dir
    assert not os.path.exists(where)


def test_child_env_passes_only_its_list():
    environ = dict((key, "v") for key in PASSED_ENV)
    environ.update(AWS_SECRET_ACCESS_KEY="k", REGISTRY_AUTH_FILE="/root/auth.json", DOCKER_CONFIG="/root/.docker")
    env = child_env("/private", environ)
    assert set(env) == set(PASSED_ENV) | {"HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"}
    assert env["DOCKER_CONFIG"] == "/private/docker"


# -- the command line ---------------------------------------------------------------------
def test_copy_command_has_no_credentials_and_every_flag():
    with Workspace("origin.example.com", {"username": "u", "password": PASSWORD}, "localhost:5000",
                   {"username": "s", "password": PASSWORD}) as ws:
        argv = copy_command("/usr/bin/skopeo", "origin.example.com/app:1.0", "localhost:5000/app:1.0", ws,
                            "true", "false", command_timeout=90.2)
        text = " ".join(argv)
        assert PASSWORD not in text and _b64("u:" + PASSWORD) not in text
        assert argv[:4] == ["/usr/bin/skopeo", "--debug", "--command-timeout", "91s"]
        copy = argv[argv.index("copy"):]
        assert copy[:5] == ["copy", "--all", "--preserve-digests", "--retry-times", "0"]
        assert copy[copy.index("--digestfile") + 1] == ws.digestfile
        assert "--src-tls-verify=true" in copy and "--dest-tls-verify=false" in copy
        assert copy[copy.index("--src-authfile") + 1] == ws.source_auth
        assert copy[copy.index("--dest-authfile") + 1] == ws.dest_auth
        assert copy[-2:] == ["docker://origin.example.com/app:1.0", "docker://localhost:5000/app:1.0"]
        given = ("--src-creds", "--dest-creds", "--src-password", "--dest-password", "--src-registry-token",
                 "--dest-registry-token")
        assert not any(flag in text for flag in given)


def test_site_runtime_refuses_any_platform_and_names_its_site():
    runtime = SiteRuntime("http://localhost:5000/", skopeo="/nonexistent/skopeo")
    assert runtime.site == "localhost:5000" and runtime.label == "the copy to localhost:5000"
    assert runtime.kind == "skopeo" and runtime.can_mirror is False
    assert "every platform" in runtime.check_platform("linux/arm64")
    assert runtime.local_images() == {} and runtime.local_platform(None) is None
    with pytest.raises(NotImplementedError):
        runtime.origin_digest(None, None, 1)


# -- output -------------------------------------------------------------------------------
def test_first_copy_progress_and_uploads():
    output = CopyOutput()
    alive = feed(output, "index-first", "pty")
    feed(output, "index-first", "stderr")
    events = output.take() + output.finish()
    layers = {"798bb216be47", "16cce68c4f93"}
    assert set(output.layers) == layers  # the config has a bar, but no layer
    assert {d["layer"] for k, d in events if k == "layer" and d["phase"] == "Waiting"} == layers
    for layer in layers:
        seen = [(d["current"], d["total"]) for k, d in events if k == "progress" and d["layer"] == layer]
        assert len(seen) == 2 and seen[-1] == (8 << 20, 8 << 20) and seen[0][0] < seen[0][1], seen
        done = [d for k, d in events if k == "layer" and d["layer"] == layer and d["done"]]
        assert [d["phase"] for d in done] == ["Copy complete"]
    # every layer and the config went to the site; skopeo named each upload once
    assert len(output.uploaded) == 3 and not output.skipped
    # a bar redrawn with the same figures is no sign of life: 2 layers x (announce + 2 figures) at most
    assert alive <= 6


def test_second_copy_skips_every_layer():
    output = CopyOutput()
    feed(output, "index-again", "pty")
    feed(output, "index-again", "stderr")
    events = output.take() + output.finish()
    assert not output.uploaded and len(output.skipped) == 2
    done = [d for k, d in events if k == "layer" and d["done"]]
    assert sorted(d["phase"] for d in done) == ["Already exists"] * 2
    assert not [d for k, d in events if k == "progress"]  # the config's bar is not a layer's


def test_copy_without_a_terminal():
    output = CopyOutput()
    feed(output, "image-pipe", "stdout")
    feed(output, "image-pipe", "stderr")
    events = output.take() + output.finish()
    assert len(output.layers) == 3 and len(output.uploaded) == 4  # three layers and the config
    assert all(len(layer) == 12 for layer in output.layers)
    assert sum(1 for k, d in events if k == "layer" and d["done"]) == 3


def test_an_end_heard_before_the_blob_is_named():
    output = CopyOutput()
    digest = "sha256:" + "ab" * 32
    output.stderr_line('time="t" level=debug msg="Upload of layer %s complete"' % digest)
    assert output.take() == []  # a config, as far as anyone knows yet
    output.stdout_line("Copying blob %s" % digest)
    phases = [(k, d["phase"], d["done"]) for k, d in output.take()]
    assert phases == [("layer", "Waiting", False), ("layer", "Copy complete", True)]


def test_failure_from_the_fatal_line():
    output = CopyOutput()
    feed(output, "missing", "stderr")
    error = output.failure(1, names=("localhost:34679/cap/absent:latest",))
    assert isinstance(error, PermanentPullError)
    assert error.message.startswith("initializing source docker://localhost:34679/cap/absent:latest: ")
    assert "manifest unknown" in error.message


def test_failure_without_a_fatal_line():
    assert isinstance(CopyOutput().failure(-9), TransientPullError)
    assert CopyOutput().failure(-9).message == "skopeo was killed by signal 9"
    assert CopyOutput().failure(2).message == "skopeo exited with status 2"


@pytest.mark.parametrize("line, expected", [
    ('time="2026-12-02T03:00:53Z" level=debug msg="Skipping blob sha256:ab (already present):"',
     ("debug", "Skipping blob sha256:ab (already present):")),
    ('time="x" level=fatal msg="a \\"quoted\\" word"', ("fatal", 'a "quoted" word')),
    ("time=x level=info msg=plain", ("info", "plain")),
    ("no record here", None),
])
def test_log_records(line, expected):
    assert log_record(line) == expected


@pytest.mark.parametrize("number, unit, expected", [
    ("8.0", "MiB", 8 << 20), ("16.0", "KiB", 16384), ("323.0", "b", 323), ("1.5", "GiB", 3 << 29)])
def test_sizes(number, unit, expected):
    assert parse_size(number, unit) == expected


def test_line_buffer_drops_carriage_returns_and_keeps_partial_lines():
    buffer = LineBuffer()
    assert buffer.feed(b"Copying blob a\r\nCopy") == ["Copying blob a"]
    assert buffer.feed(b"ing\r\n") == ["Copying"]
    assert buffer.feed(b"end") == [] and buffer.rest() == ["end"]


# -- errors -------------------------------------------------------------------------------
# Measured: skopeo 1.9.3's fatal messages for each fault, from an origin or a site behind a fault proxy.
PERMANENT = [
    "initializing source docker://localhost:1/x:latest: reading manifest latest in localhost:1/x: manifest unknown: "
    "manifest unknown",
    "initializing source docker://localhost:1/private/img-01:latest: reading manifest latest in "
    "localhost:1/private/img-01: unauthorized: authentication required",
    "trying to reuse blob sha256:e0ad at destination: checking whether a blob sha256:e0ad exists in "
    "localhost:2/exp/err5: unauthorized: authentication required",
    "initializing source docker://r.example.com/x:latest: pinging container registry r.example.com: Get "
    "\"https://r.example.com/v2/\": x509: certificate signed by unknown authority",
    "initializing source docker://localhost:1/x:latest: pinging container registry localhost:1: Get "
    "\"https://localhost:1/v2/\": http: server gave HTTP response to HTTPS client",
    "Source image rejected: Running image docker://r/x:latest is rejected by policy.",
]
TRANSIENT = [
    "initializing source docker://localhost:1/x:latest: reading manifest latest in localhost:1/x: received unexpected "
    "HTTP status: 503 Service Unavailable",
    "initializing source docker://localhost:1/x:latest: Get \"http://localhost:1/v2/x/manifests/latest\": read tcp "
    "127.0.0.1:2->127.0.0.1:1: read: connection reset by peer",
    "initializing source docker://localhost:1/x:latest: pinging container registry localhost:1: Get "
    "\"http://localhost:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
    "reading blob sha256:210a: Error fetching blob: invalid status code from registry 503 (Service Unavailable)",
    "writing blob: initiating layer upload to /v2/exp/err4/blobs/uploads/ in localhost:2: received unexpected HTTP "
    "status: 503 Service Unavailable",
    "trying to reuse blob sha256:e0ad at destination: pinging container registry localhost:2: invalid status code "
    "from registry 503 (Service Unavailable)",
    # a 5xx whose body says something final is still a 5xx
    "reading blob sha256:1: Error fetching blob: invalid status code from registry 502 (Bad Gateway): not found",
]


@pytest.mark.parametrize("message", PERMANENT)
def test_permanent_errors(message):
    assert isinstance(classify(message), PermanentPullError)


@pytest.mark.parametrize("message", TRANSIENT)
def test_transient_errors(message):
    assert isinstance(classify(message), TransientPullError)


def test_image_names_do_not_decide():
    message = ("initializing source docker://localhost:1/access-denied/not-found:latest: pinging container registry "
               "localhost:1: dial tcp 127.0.0.1:1: connect: connection refused")
    assert isinstance(classify(message, names=("localhost:1/access-denied/not-found:latest",)), TransientPullError)


def test_messages_are_bounded_and_redacted():
    long = ("reading blob sha256:1: Patch \"http://site:5000/v2/x/blobs/uploads/u?_state=%s&digest=sha256%%3A1\": "
            "write: broken pipe" % ("Zm9v" * 80))
    cleaned = clean_message(long)
    assert "_state" not in cleaned and "http://site:5000/v2/x/blobs/uploads/u?..." in cleaned
    assert len(clean_message("x " * 1000)) == MAX_MESSAGE
    secret = _b64("u:" + PASSWORD)
    assert clean_message("answer had %s and https://u:%s@r/v2/" % (secret, PASSWORD), (secret, PASSWORD)) == \
        "answer had %s and https://u:%s@r/v2/" % (MASK, MASK)
