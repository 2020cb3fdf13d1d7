import pytest

from puller.core._errors import PermanentPullError, TransientPullError, is_retryable, pull_error

PERMANENT = [
    "unauthorized: authentication required",
    "Get http://r/v2/x/manifests/latest: unauthorized: incorrect username or password",
    "pull access denied for x, repository does not exist or may require 'docker login': denied: requested "
    "access to the resource is denied",
    "manifest for localhost:5000/x:latest not found: manifest unknown: manifest unknown",
    "name unknown: repository name not known to registry",
    "invalid reference format",
    "no matching manifest for linux/amd64 in the manifest list entries",
]
TRANSIENT = [
    "received unexpected HTTP status: 503 Service Unavailable",
    "Get http://localhost:9/v2/: dial tcp 127.0.0.1:9: connect: connection refused",
    "read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer",
    "net/http: TLS handshake timeout",
    "toomanyrequests: You have reached your pull rate limit",
    "unexpected EOF",
    "error talking to the Docker daemon: ('Connection broken: IncompleteRead(0 bytes read)')",
    "received unexpected HTTP status: 502 Bad Gateway, but the body says not found",
    "something nobody has seen before",
]


@pytest.mark.parametrize("message", PERMANENT)
def test_permanent(message):
    assert not is_retryable(message)
    assert isinstance(pull_error(message), PermanentPullError)


@pytest.mark.parametrize("message", TRANSIENT)
def test_transient(message):
    assert is_retryable(message)
    assert isinstance(pull_error(message), TransientPullError)


def test_status_code_decides_when_the_text_does_not():
    assert not is_retryable("odd", 400)
    assert is_retryable("odd", 429)
    assert is_retryable("odd", 500)
