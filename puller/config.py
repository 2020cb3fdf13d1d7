"""Server settings: flags and environment flow into one frozen ``ServerConfig``.

Flags win over environment variables, which win over the defaults. The
fields, parsers and defaults are those of ``puller.settings.SETTINGS``; a bad
value is refused here, at start-up, naming the flag or variable it came from.
"""

import dataclasses
import json
import os
from typing import Tuple

from puller import settings
from puller.core._daemon import DaemonTLS
from puller.core._engine import DEFAULT_DAEMON_TIMEOUT, EngineConfig
from puller.core._errors import InvalidRequest

DEFAULT_LISTEN = settings.BY_NAME["listen"].default
DEFAULT_DOCKER_SOCKET = settings.BY_NAME["docker_socket"].default
parse_listen_address = settings.parse_listen


class _ConfigMethods:
    """What every ``ServerConfig`` can tell besides its fields."""

    @property
    def address(self) -> Tuple[str, int]:
        return settings.parse_listen(self.listen)

    @property
    def loopback_only(self) -> bool:
        host = self.address[0]
        return host in ("localhost", "::1") or host.startswith("127.")

    def daemon_tls(self):
        """TLS to the daemon, as the docker CLI decides it: ``--tlsverify`` or any TLS file given."""
        files = (self.tlscacert, self.tlscert, self.tlskey)
        if not self.tlsverify and not any(files):
            return None
        base = self.docker_cert_path or os.path.join(os.path.expanduser("~"), ".docker")

        def pick(given, name):
            path = given or os.path.join(base, name)
            return path if given or os.path.exists(path) else None

        return DaemonTLS(verify=bool(self.tlsverify), ca_cert=pick(self.tlscacert, "ca.pem"),
                         client_cert=pick(self.tlscert, "cert.pem"), client_key=pick(self.tlskey, "key.pem"),
                         hostname=None)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(docker_host=self.docker_socket, deadline=self.deadline, tls=self.daemon_tls(),
                            max_daemon_pulls=self.max_daemon_pulls, backoff_base=self.backoff_base,
                            backoff_cap=self.backoff_cap, stall_timeout=self.stall_timeout)

    def runtime(self):
        """The runtime below the engine's seam: the CRI at ``--runtime-endpoint``, else None (the Docker API)."""
        if not self.runtime_endpoint:
            return None
        from puller.core._runtime_cri import CriRuntime

        return CriRuntime(self.runtime_endpoint, timeout=DEFAULT_DAEMON_TIMEOUT,
                          insecure_registries=tuple(self.insecure_registry))

    def preheaters(self, site_auth, credentials=None, observer=None):
        """The engines of preheats, one per site (``_preheat.Preheaters``)."""
        from puller.core._preheat import Preheaters

        return Preheaters(self.engine_config(), site_auth=site_auth, insecure_registries=tuple(self.insecure_registry),
                          credentials=credentials, observer=observer)

    @property
    def state_path(self) -> str:
        return self.state_dir or settings.default_state_dir(self.listen)

    def public(self) -> dict:
        """What ``/debug/dump`` shows: everything but secrets (and, on a CRI node, no Docker socket it never uses)."""
        shown = settings.public(self)
        if self.runtime_endpoint:
            shown.pop("docker_socket", None)
        return shown


def _field(setting):
    shown = setting.show != settings.SHOW_SECRET
    if isinstance(setting.default, (dict, list)):
        # pylint: disable-next=invalid-field-call  # the field goes to make_dataclass below
        return dataclasses.field(default_factory=type(setting.default), repr=shown)
    # pylint: disable-next=invalid-field-call
    return dataclasses.field(default=setting.default, repr=shown)


ServerConfig = dataclasses.make_dataclass(
    "ServerConfig", [(s.name, object, _field(s)) for s in settings.SETTINGS], bases=(_ConfigMethods,),
    frozen=True)
ServerConfig.__doc__ = "The server's settings, frozen; one field per entry of ``puller.settings.SETTINGS``."


def parse_listen(value: str) -> Tuple[str, int]:
    try:
        return settings.parse_listen(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), "listen")


def _raw_value(setting, flags, environ):
    """``(raw, where)`` for one setting, or ``(None, None)`` when nobody set it."""
    raw = flags.get(setting.name)
    if raw is not None:
        return raw, setting.option or setting.name
    names = [n for n in (setting.env,) + tuple(setting.also_env) if n in environ]
    if names:
        value = environ[names[0]]
        if value.strip():
            return value, names[0]
        if setting.show == settings.SHOW_SECRET or value:
            # A variable that is set but blank was meant to say something; for
            # a secret, reading it as "unset" would turn authentication off.
            raise InvalidRequest("is set but blank; unset it or give a value", names[0])
    return None, None


def _one_runtime(values, given):
    """``--runtime-endpoint`` or ``--docker-socket``: a flag wins over any
    variable, and ``CONTAINER_RUNTIME_ENDPOINT`` over ``DOCKER_HOST``."""
    cri, docker = given.get("runtime_endpoint"), given.get("docker_socket")
    if not cri or not docker:
        return
    cri_flag, docker_flag = cri.startswith("--"), docker.startswith("--")
    if cri_flag and docker_flag:
        raise InvalidRequest("names the CRI runtime, --docker-socket the Docker daemon: give one of them",
                             "--runtime-endpoint")
    if docker_flag and not cri_flag:
        values.pop("runtime_endpoint")
    else:
        values.pop("docker_socket")


def from_sources(flags: dict, environ=None, names=None) -> "ServerConfig":
    """Build the config from parsed flags (None = not given) and the environment.

    ``names`` limits which settings are read (the CLI's ``pull`` reads only
    its own); the others keep their defaults.
    """
    environ = os.environ if environ is None else environ
    values, given = {}, {}
    for setting in settings.SETTINGS:
        if names is not None and setting.name not in names:
            continue
        raw, where = _raw_value(setting, flags, environ)
        if raw is None:
            continue
        given[setting.name] = where
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise InvalidRequest("invalid value %r: %s" % (raw, exc) if setting.show != settings.SHOW_SECRET
                                 else "invalid value: %s" % exc, where)
    _one_runtime(values, given)
    token_file = values.get("token_file")
    if token_file:
        values["token"] = _read_token(token_file)
    return ServerConfig(**values)


def read_mirror_auth(path):
    """The ``--mirror-auth-file``: ``{"mirror-host": {auth_config}}``; ``{}`` without a file."""
    from puller.core._credentials import require_owner_only
    from puller.core._mirrors import normalize_host
    from puller.core._request import AUTH_CONFIG_KEYS

    if not path:
        return {}
    try:
        require_owner_only(path, "--mirror-auth-file")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__  # never the file's content
        raise InvalidRequest("cannot read mirror credentials from %s: %s" % (path, reason), "--mirror-auth-file")
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InvalidRequest("%s must map a mirror host to an object of %s" % (path, ", ".join(AUTH_CONFIG_KEYS)),
                             "--mirror-auth-file")
    return {normalize_host(host, "--mirror-auth-file"): {k: v for k, v in auth.items() if k in AUTH_CONFIG_KEYS}
            for host, auth in data.items()}


def _read_token(path):
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cannot read token file %s: %s" % (path, getattr(exc, "strerror", None) or exc),
                             "--token-file")
    if not token:
        raise InvalidRequest("token file %s is empty" % path, "--token-file")
    return token
