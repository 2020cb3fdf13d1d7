"""Server settings: flags and environment flow into one frozen ``ServerConfig``.

Flags win over environment variables, which win over the defaults below.
"""

import dataclasses
import os
from typing import Optional, Tuple

from puller.core._engine import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_DAEMON_PULLS,
    EngineConfig,
)
from puller.core._errors import InvalidRequest
from puller.core._godur import format_duration, parse_duration
from puller.core._request import DEFAULT_MAX_IMAGES
from puller.core._retry import DEFAULT_BACKOFF_BASE

DEFAULT_LISTEN = "127.0.0.1:9006"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
DEFAULT_MAX_BODY = 1024 * 1024
DEFAULT_DRAIN_TIMEOUT = 60.0
DEFAULT_CONNECTIONS = 1000

# (flag dest, environment variable, parser) for every setting.
ENVIRONMENT = (
    ("listen", "LISTEN_ADDR", str),
    ("docker_socket", "DOCKER_SOCKET", str),
    ("token_file", "PULLER_TOKEN_FILE", str),
    ("max_images", "PULLER_MAX_IMAGES", int),
    ("max_body", "PULLER_MAX_BODY", int),
    ("deadline", "PULLER_DEADLINE", parse_duration),
    ("max_daemon_pulls", "PULLER_MAX_DAEMON_PULLS", int),
    ("drain_timeout", "PULLER_DRAIN_TIMEOUT", parse_duration),
    ("connections", "PULLER_CONNECTIONS", int),
    ("backoff_base", "PULLER_BACKOFF_BASE", parse_duration),
)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    docker_socket: str = DEFAULT_DOCKER_SOCKET
    token: Optional[str] = dataclasses.field(default=None, repr=False)
    max_images: int = DEFAULT_MAX_IMAGES
    max_body: int = DEFAULT_MAX_BODY
    deadline: float = DEFAULT_DEADLINE
    max_daemon_pulls: int = DEFAULT_MAX_DAEMON_PULLS
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    connections: int = DEFAULT_CONNECTIONS
    backoff_base: float = DEFAULT_BACKOFF_BASE

    @property
    def address(self) -> Tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def loopback_only(self) -> bool:
        host = self.address[0]
        return host in ("localhost", "::1") or host.startswith("127.")

    def engine_config(self) -> EngineConfig:
        return EngineConfig(docker_host=self.docker_socket, deadline=self.deadline,
                            max_daemon_pulls=self.max_daemon_pulls, backoff_base=self.backoff_base)

    def public(self) -> dict:
        """What ``/debug/dump`` shows: everything but the token itself."""
        shown = dataclasses.asdict(self)
        shown["token"] = "set" if self.token else "unset"
        for name in ("deadline", "drain_timeout", "backoff_base"):
            shown[name] = format_duration(shown[name])
        return shown


def parse_listen(value: str) -> Tuple[str, int]:
    """``:9006`` (all interfaces, as the original), ``127.0.0.1:9006``, ``[::1]:9006``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest("must be HOST:PORT or :PORT, got %r" % value, "listen")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def from_sources(flags: dict, environ=None) -> ServerConfig:
    """Build the config from parsed flags (None = not given) and the environment."""
    environ = os.environ if environ is None else environ
    values = {}
    for dest, env, parse in ENVIRONMENT:
        raw = flags.get(dest)
        source = "--" + dest.replace("_", "-")
        if raw is None and environ.get(env):
            raw, source = environ[env], env
        if raw is None:
            continue
        try:
            values[dest] = parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            raise InvalidRequest("invalid value %r: %s" % (raw, exc), source)
    token_file = values.pop("token_file", None)
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                values["token"] = fh.read().strip()
        except OSError as exc:
            raise InvalidRequest("cannot read token file: %s" % exc.strerror, "--token-file")
        if not values["token"]:
            raise InvalidRequest("token file is empty", "--token-file")
    elif environ.get("PULLER_TOKEN"):
        values["token"] = environ["PULLER_TOKEN"].strip()
    config = ServerConfig(**values)
    parse_listen(config.listen)
    for name in ("max_images", "max_body", "max_daemon_pulls", "connections"):
        if getattr(config, name) < 1:
            raise InvalidRequest("must be at least 1", "--" + name.replace("_", "-"))
    if config.deadline <= 0:
        raise InvalidRequest("must be positive", "--deadline")
    return config
