"""The host's credentials: config.json as docker.auth reads it, real helper scripts, the file mode check."""

import base64
import json
import os
import subprocess
import threading
import time

import pytest

from puller.config import read_mirror_auth
from puller.core._credentials import HostCredentials, RegistryLookups, require_owner_only
from puller.core._errors import DeadlineExceeded, InvalidRequest, PermanentPullError

REGISTRY = "registry.example:5000"
OTHER = "other.example"
SECRET = "Helper-Stdout-Secret-77"


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _config(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(content))
    return str(path)


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """Installs ``docker-credential-<name>`` running ``body`` (``$server`` is what it was asked) on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir) + os.pathsep + os.environ["PATH"])

    def make(name, body):
        calls = tmp_path / (name + ".calls")
        path = bindir / ("docker-credential-" + name)
        path.write_text('#!/bin/sh\n[ "$1" = get ] || exit 1\nread -r server\necho "$server" >> "%s"\n%s\n'
                        % (calls, body))
        path.chmod(0o755)
        return calls

    return make


def _running(marker):
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False).stdout
    return out.split()


def _gone(marker):
    for _attempt in range(50):  # the kill is immediate; reaping the group's last child may lag a little
        if not _running(marker):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("content,problem", [
    (["not", "an", "object"], "it is not a JSON object"),
    ({"auths": {REGISTRY: {"auth": "abc"}}}, "its auth is not valid base64"),
    ({"auths": {REGISTRY: {"auth": _b64("user-without-colon")}}}, "its auth does not decode to user:password"),
    ({"auths": {REGISTRY: {"auth": 12345}}}, "its auth is not a string"),
    ({"auths": {REGISTRY: "not an object"}}, "it is not an object"),
    ({"auths": ["a", "list"]}, "its auths is not an object"),
])
def test_a_malformed_config_json_fails_the_registry_naming_the_problem(tmp_path, content, problem):
    path = _config(tmp_path, content)
    with pytest.raises(PermanentPullError) as err:
        HostCredentials(path).lookup(REGISTRY)
    assert REGISTRY in err.value.message and problem in err.value.message and "Docker config" in err.value.message
    assert len(err.value.message) <= 200


def test_a_malformed_entry_fails_only_its_own_registry(tmp_path):
    path = _config(tmp_path, {"auths": {REGISTRY: {"auth": "abc"}, OTHER: {"auth": _b64("me:" + SECRET)}}})
    credentials = HostCredentials(path)
    assert credentials.lookup(OTHER) == {"username": "me", "password": SECRET, "serveraddress": OTHER}
    assert credentials.lookup("third.example") == {}
    with pytest.raises(PermanentPullError):
        credentials.lookup(REGISTRY)


@pytest.mark.parametrize("body,problem", [
    ('echo "not json, but %s"' % SECRET, "answered with something that is not JSON"),
    ("echo '{}'", "answered without a Username and Secret"),
    ('printf \'{"Username": 1, "Secret": "%s"}\'' % SECRET, "answered without a Username and Secret"),
    ("head -c 52428800 /dev/zero | tr '\\0' x", "answered with more than 1024 KiB"),
    ('echo "%s"; exit 4' % SECRET, "exited with status 4"),
])
def test_bad_helper_output_is_a_short_message_without_the_output(tmp_path, helper, body, problem):
    helper("bad", body)
    with pytest.raises(PermanentPullError) as err:
        HostCredentials(_config(tmp_path, {"credHelpers": {REGISTRY: "bad"}})).lookup(REGISTRY)
    message = err.value.message
    assert "credential helper for %s failed" % REGISTRY in message and problem in message, message
    assert SECRET not in message and len(message) <= 200


def test_a_helper_that_knows_nothing_falls_back_to_auths(tmp_path, helper):
    helper("empty", 'echo "credentials not found in native keychain"; exit 1')
    path = _config(tmp_path, {"credHelpers": {REGISTRY: "empty"}, "auths": {REGISTRY: {"auth": _b64("u:p")}}})
    assert HostCredentials(path).lookup(REGISTRY)["username"] == "u"


def test_a_hanging_helper_is_killed_at_the_deadline_with_its_children(tmp_path, helper):
    marker = "3600.%d1" % os.getpid()
    helper("hang", "sleep " + marker)
    with pytest.raises(DeadlineExceeded) as err:
        HostCredentials(_config(tmp_path, {"credHelpers": {REGISTRY: "hang"}})).lookup(
            REGISTRY, deadline_at=time.monotonic() + 0.5)
    assert "docker-credential-hang did not answer within the image's deadline" in err.value.message
    assert _gone(marker) and _gone("docker-credential-hang")


def test_a_cancel_kills_the_helper(tmp_path, helper):
    marker = "3600.%d2" % os.getpid()
    calls = helper("hang", "sleep " + marker)
    cancel = threading.Event()
    failed = []

    def look():
        try:
            HostCredentials(_config(tmp_path, {"credHelpers": {REGISTRY: "hang"}})).lookup(REGISTRY, cancel=cancel)
        except PermanentPullError as exc:
            failed.append(exc.message)

    worker = threading.Thread(target=look)
    worker.start()
    while not (calls.exists() and _running(marker)):
        time.sleep(0.05)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive() and "cancelled" in failed[0]
    assert _gone(marker)


def test_one_request_asks_a_registry_once(tmp_path, helper):
    calls = helper("slow", 'sleep 0.5; printf \'{"Username":"u","Secret":"%s"}\'' % SECRET)
    lookups = RegistryLookups(HostCredentials(_config(tmp_path, {"credHelpers": {REGISTRY: "slow"}})))
    found = []
    threads = [threading.Thread(target=lambda: found.append(lookups.lookup(REGISTRY, 30))) for _thread in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert found == [{"username": "u", "password": SECRET, "serveraddress": REGISTRY}] * 5
    assert calls.read_text().split() == [REGISTRY]


def test_images_waiting_on_a_lookup_share_its_failure(tmp_path, helper):
    calls = helper("broken", "exit 3")
    lookups = RegistryLookups(HostCredentials(_config(tmp_path, {"credHelpers": {REGISTRY: "broken"}})))
    for _image in range(3):
        with pytest.raises(PermanentPullError, match="exited with status 3"):
            lookups.lookup(REGISTRY, 30)
    assert calls.read_text().split() == [REGISTRY]


@pytest.mark.parametrize("mode,refused", [(0o644, True), (0o640, True), (0o600, False), (0o400, False)])
def test_secret_files_must_be_the_owner_s_only(tmp_path, mode, refused):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"mirror.example": {"username": "u", "password": "p"}}))
    path.chmod(mode)
    if not refused:
        require_owner_only(str(path), "--x")
        assert read_mirror_auth(str(path)) == {"mirror.example": {"username": "u", "password": "p"}}
        return
    with pytest.raises(InvalidRequest) as err:
        read_mirror_auth(str(path))
    assert err.value.field == "--mirror-auth-file" and "chmod 600" in err.value.message
