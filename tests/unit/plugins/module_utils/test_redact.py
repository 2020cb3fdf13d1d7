import base64

import pytest

from puller.core._redact import MASK, distinctive, redact, secrets_of

DAEMON_MESSAGES = [
    "unauthorized: authentication required",
    "Head \"http://localhost:5001/v2/private/img-01/manifests/latest\": no basic auth credentials",
    "Get \"https://registry-1.docker.io/v2/bbklab/abc/manifests/latest\": unauthorized: incorrect username or "
    "password",
    "pull access denied for private/img-01, repository does not exist or may require 'docker login': denied: "
    "requested access to the resource is denied",
    "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating",
    "error parsing HTTP 401 response body: unexpected end of JSON input: \"\"",
    "www-authenticate: Bearer realm=\"https://auth.example/token\",service=\"registry\"",
    "manifest for localhost:5000/a/b:1.0 not found: manifest unknown: manifest unknown",
]
WORDLIKE_PASSWORDS = ["a", ":", "e", "unauthorized", "authentication required", "Authentication", "pull",
                      "password", "denied", "5000", "http", "/", "\"", "tom"]


@pytest.mark.parametrize("password", WORDLIKE_PASSWORDS)
def test_messages_without_the_secret_are_never_altered(password):
    # The daemon does not echo passwords: masking their letters in its
    # messages only mangled them and gave the password away by elimination.
    secrets = secrets_of({"username": "tom", "password": password})
    for message in DAEMON_MESSAGES:
        assert redact(message, secrets) == message


def test_userinfo_in_urls_is_masked():
    text = redact("Get https://tom:pa55@reg.example/v2/: denied", ())
    assert text == "Get https://tom:%s@reg.example/v2/: denied" % MASK


def test_credential_values_are_masked():
    basic = base64.b64encode(b"tom:pa55").decode()
    assert redact('{"auth": "%s", "email": "t@x"}' % basic, ()) == '{"auth": "%s", "email": "t@x"}' % MASK
    assert redact("Authorization: Basic %s" % basic, ()) == "Authorization: Basic %s" % MASK
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc", ()) == "Authorization: Bearer " + MASK
    assert redact("identitytoken=Zm9vYmFyYmF6 next", ()) == "identitytoken=%s next" % MASK
    assert redact('"password": "x"', ()) == '"password": "%s"' % MASK


def test_distinctive_secrets_are_masked_where_they_stand_whole():
    auth = {"username": "tom", "password": "S3cret-Pa55", "identitytoken": "idtok-123456"}
    secrets = secrets_of(auth)
    basic = base64.b64encode(b"tom:S3cret-Pa55").decode()
    text = redact("bad S3cret-Pa55 and idtok-123456 and %s for tom" % basic, secrets)
    assert "S3cret-Pa55" not in text and "idtok-123456" not in text and basic not in text
    assert text.count(MASK) == 3 and "tom" in text
    assert redact("xS3cret-Pa55x", secrets) == "xS3cret-Pa55x"


def test_what_counts_as_distinctive():
    assert distinctive("S3cret-Registry-Pa55") and distinctive("dG9tOnBhNTU=") and distinctive("abc-1234")
    assert not any(distinctive(p) for p in WORDLIKE_PASSWORDS + ["authorization", "short-1"])


def test_no_auth_no_change():
    assert secrets_of({}) == () and redact("x", ()) == "x"
