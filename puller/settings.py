"""Every server setting, declared once.

A ``Setting`` names its config field, flag, environment variable, parser,
default and help, and says how ``/debug/dump`` shows it. From ``SETTINGS``
come the argparse options (``add_arguments``), the reading of flags and
environment (``puller.config.from_sources``), the frozen ``ServerConfig``,
``/debug/dump`` (``public``) and the README's configuration table
(``markdown_table``; a unit test fails when the README is out of date).

Parsers take the raw text (or an already typed value from code) and raise
``ValueError`` with the reason; ``from_sources`` adds the flag or variable.
"""

import dataclasses
import math
import os
from typing import Any, Callable, Optional

from puller.core._engine import DEFAULT_DEADLINE, DEFAULT_MAX_DAEMON_PULLS, DEFAULT_STALL_TIMEOUT
from puller.core._godur import format_duration, parse_duration
from puller.core._request import DEFAULT_MAX_IMAGES
from puller.core._retry import DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP

SHOW_PLAIN = "plain"  # /debug/dump shows the value
SHOW_DURATION = "duration"  # ... as a Go duration string
SHOW_SECRET = "secret"  # ... only "set" or "unset"
SHOW_NONE = "none"  # not shown (folded into another setting)


# -- parsers -----------------------------------------------------------------
def text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def positive_int(value):
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    try:
        number = int(value) if isinstance(value, int) else int(str(value).strip(), 10)
    except ValueError:
        raise ValueError("must be a whole number")
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def positive_duration(value):
    seconds = parse_duration(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("must be a positive duration such as 500ms, 10s or 30m")
    return seconds


def boolean(value):
    if isinstance(value, bool):
        return value
    text_value = str(value).strip().lower()
    if text_value in ("1", "true", "yes", "on"):
        return True
    if text_value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def docker_flag(value):
    """``DOCKER_TLS_VERIFY`` as the docker CLI reads it: set and not empty means on."""
    if isinstance(value, bool):
        return value
    text_value = str(value).strip().lower()
    return text_value not in ("", "0", "false", "no", "off")


def directory(value):
    return os.path.abspath(os.path.expanduser(text(value)))


def state_base_dir():
    """Per user, as the XDG base directories say; the container image sets /var/lib/puller."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "puller")


def default_state_dir(listen):
    """One state dir per listen address, so that servers on other ports never
    share (and lock) one, and a server restarted on its address finds its jobs:
    ``127.0.0.1:9006`` -> ``~/.local/state/puller/127.0.0.1-9006``."""
    host, port = parse_listen(listen)
    name = "%s-%d" % ("[%s]" % host if ":" in host else host, port)
    return os.path.join(state_base_dir(), name)


def mirror_map(value):
    from puller.core._mirrors import parse_setting  # a ValueError names the bad entry

    if isinstance(value, dict):
        return value
    return parse_setting(value)


def registry_patterns(value):
    items = value if isinstance(value, list) else str(value).split(";")
    patterns = [item.strip().lower() for item in items if item and item.strip()]
    for pattern in patterns:
        if not all(c.isalnum() or c in ".-:*?[]" for c in pattern):
            raise ValueError("%r is not a registry host pattern" % pattern)
    return patterns


def registry_hosts(value):
    """Registry hosts (``HOST[:PORT]``), as a list (repeated flags) or ``;``-separated (a variable)."""
    from puller.core._mirrors import normalize_host
    from puller.core._errors import InvalidRequest

    items = value if isinstance(value, list) else str(value).split(";")
    hosts = []
    for item in items:
        if not item or not item.strip():
            continue
        try:
            host = normalize_host(item, "host")
        except InvalidRequest as exc:
            raise ValueError(exc.message)
        if host not in hosts:
            hosts.append(host)
    return hosts


def listen_address(value):
    value = text(value)
    parse_listen(value)
    return value


def parse_listen(value):
    """``:9006`` (all interfaces, as the original), ``127.0.0.1:9006``, ``[::1]:9006``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT or :PORT, got %r" % value)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


# -- the table ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    show: str = SHOW_PLAIN
    flag: Optional[str] = ""  # "" derives --name-with-dashes; None: environment only
    metavar: Optional[str] = None
    switch: bool = False  # a flag without a value: "--no-X" turns a default-on boolean off, "--X" turns one on
    repeat: bool = False  # the flag may be given many times; the values come as a list
    also_env: tuple = ()  # more variables read, in order, when ``env`` is not set

    @property
    def option(self):
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    def shown(self, value):
        if self.show == SHOW_SECRET:
            return "set" if value else "unset"
        if self.show == SHOW_DURATION and value is not None:
            return format_duration(value)
        return value

    @property
    def shown_metavar(self):
        if self.metavar:
            return self.metavar
        return "DURATION" if self.show == SHOW_DURATION else None


SETTINGS = (
    Setting("listen", "LISTEN_ADDR", "127.0.0.1:9006", listen_address,
            "`HOST:PORT`; `:PORT` listens on all interfaces, as the original did", metavar="HOST:PORT"),
    Setting("docker_socket", "DOCKER_SOCKET", "/var/run/docker.sock", text,
            "the Docker daemon: socket path, or `unix://`, `tcp://` URL; also read from `DOCKER_HOST`, as the "
            "docker CLI does", metavar="PATH|URL", also_env=("DOCKER_HOST",)),
    Setting("runtime_endpoint", "CONTAINER_RUNTIME_ENDPOINT", None, text,
            "a Kubernetes node's CRI runtime instead of Docker, as crictl names it: "
            "`unix:///run/containerd/containerd.sock`; not with `--docker-socket`. Of the variables, this one wins "
            "over `DOCKER_HOST`; any flag wins over both", metavar="URL"),
    Setting("tlsverify", "DOCKER_TLS_VERIFY", False, docker_flag,
            "TLS to the daemon, verifying its certificate (the docker CLI's flag and variable)", switch=True),
    Setting("tlscacert", "PULLER_TLSCACERT", None, text,
            "CA the daemon's certificate must be signed by (default `$DOCKER_CERT_PATH/ca.pem`); it wins over "
            "`REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE`", metavar="FILE"),
    Setting("tlscert", "PULLER_TLSCERT", None, text, "client certificate for the daemon (default "
            "`$DOCKER_CERT_PATH/cert.pem`)", metavar="FILE"),
    Setting("tlskey", "PULLER_TLSKEY", None, text, "its key (default `$DOCKER_CERT_PATH/key.pem`)",
            metavar="FILE"),
    Setting("docker_cert_path", "DOCKER_CERT_PATH", None, text,
            "directory with `ca.pem`, `cert.pem`, `key.pem`, as the docker CLI reads it", flag=None),
    Setting("token_file", "PULLER_TOKEN_FILE", None, text,
            "file holding the bearer token required on every endpoint but `/ping`, compared in constant "
            "time; an empty file is refused. Listening off loopback without one prints a loud warning",
            show=SHOW_NONE, metavar="FILE"),
    Setting("token", "PULLER_TOKEN", None, text,
            "the token itself, when there is no token file; a blank value is refused, never taken as "
            "\"no token\"", show=SHOW_SECRET, flag=None),
    Setting("max_images", "PULLER_MAX_IMAGES", DEFAULT_MAX_IMAGES, positive_int, "images per `/pull`",
            metavar="N"),
    Setting("max_body", "PULLER_MAX_BODY", 1024 * 1024, positive_int, "bytes per request body", metavar="BYTES"),
    Setting("deadline", "PULLER_DEADLINE", DEFAULT_DEADLINE, positive_duration,
            "per-image deadline; a request's `timeout` can only shorten it", show=SHOW_DURATION),
    Setting("max_daemon_pulls", "PULLER_MAX_DAEMON_PULLS", DEFAULT_MAX_DAEMON_PULLS, positive_int,
            "server-wide cap on concurrent daemon pulls", metavar="N"),
    Setting("backoff_base", "PULLER_BACKOFF_BASE", DEFAULT_BACKOFF_BASE, positive_duration,
            "first retry delay, doubled per attempt (with jitter)", show=SHOW_DURATION),
    Setting("backoff_cap", "PULLER_BACKOFF_CAP", DEFAULT_BACKOFF_CAP, positive_duration,
            "longest retry delay", show=SHOW_DURATION),
    Setting("stall_timeout", "PULLER_STALL_TIMEOUT", DEFAULT_STALL_TIMEOUT, positive_duration,
            "an attempt whose daemon stream sends no event at all for this long is aborted and retried "
            "(within the deadline)", show=SHOW_DURATION),
    Setting("state_dir", "PULLER_STATE_DIR", None, directory,
            "where the job store lives (SQLite); default one dir per listen address under "
            "`$XDG_STATE_HOME/puller` or `~/.local/state/puller` (e.g. `~/.local/state/puller/127.0.0.1-9006`), "
            "`/var/lib/puller` in the container image", metavar="DIR"),
    Setting("max_jobs", "PULLER_MAX_JOBS", 100, positive_int,
            "most jobs queued or running at once; beyond it `POST /jobs` answers 429", metavar="N"),
    Setting("job_retention", "PULLER_JOB_RETENTION", 7 * 24 * 3600.0, positive_duration,
            "ended jobs older than this are deleted from the store", show=SHOW_DURATION),
    Setting("resume", "PULLER_RESUME", True, boolean,
            "resume jobs that were queued or running when the last process stopped; `--no-resume` (or "
            "`PULLER_RESUME=false`) marks them interrupted instead", flag="--no-resume", switch=True),
    Setting("mirrors", "PULLER_MIRRORS", {}, mirror_map,
            "`REGISTRY=MIRROR[,MIRROR...]`, repeatable (in the variable: entries separated by `;`): mirrors to "
            "try, in order, before the origin, for any registry (`docker.io` included). Trusted: the operator "
            "named them", flag="--mirror", metavar="REGISTRY=MIRROR[,MIRROR]", repeat=True),
    Setting("mirror_auth_file", "PULLER_MIRROR_AUTH_FILE", None, text,
            "JSON file (mode 0600) mapping a mirror host to its own `auth_config`; a mirror never gets the "
            "origin's credentials", metavar="FILE"),
    Setting("allow_request_mirrors", "PULLER_ALLOW_REQUEST_MIRRORS", False, boolean,
            "accept mirrors that a request names in its `mirrors` (otherwise 403); they are used only when "
            "the origin confirms the tag's digest", switch=True),
    Setting("allow_registry", "PULLER_ALLOW_REGISTRIES", [], registry_patterns,
            "registries images may come from, repeatable (in the variable: separated by `;`); shell-style "
            "patterns such as `reg.example.com`, `*.corp.example`, `docker.io`. An image from any other "
            "registry is refused with 403 before the daemon is asked. Default: any",
            metavar="PATTERN", repeat=True),
    Setting("preheat_site", "PULLER_PREHEAT_SITES", [], registry_hosts,
            "a site registry that preheat jobs (`POST /jobs` with `preheat.to`) may copy to, repeatable (in the "
            "variable: separated by `;`); any other site is refused with 403, as images pulled with the server's "
            "credentials must not be copied anywhere a caller names. Default: none (no preheat jobs)",
            metavar="HOST[:PORT]", repeat=True),
    Setting("insecure_registry", "PULLER_INSECURE_REGISTRIES", [], registry_hosts,
            "a registry puller itself may speak plain HTTP to (preheat copies, the CRI runtime's manifest "
            "requests), repeatable, as dockerd's option of that name (in the variable: separated by `;`). "
            "Loopback registries always may", metavar="HOST[:PORT]", repeat=True),
    Setting("https_cert", "PULLER_HTTPS_CERT", None, text,
            "serve the API over HTTPS with this certificate (PEM; with `--https-key`)", metavar="FILE"),
    Setting("https_key", "PULLER_HTTPS_KEY", None, text, "the certificate's private key (PEM)", metavar="FILE"),
    Setting("https_client_ca", "PULLER_HTTPS_CLIENT_CA", None, text,
            "require client certificates signed by this CA (PEM) on every connection", metavar="FILE"),
    Setting("host_credentials", "PULLER_HOST_CREDENTIALS", False, boolean,
            "for images without `auth_config`, use this host's Docker credentials (`config.json`, credential "
            "helpers), as `docker pull` would. Off by default: anyone allowed to call the API would pull "
            "private images with the host's identity", switch=True),
    Setting("credentials_file", "PULLER_CREDENTIALS_FILE", None, text,
            "JSON file (mode 0600) mapping a registry host to credentials, for images without `auth_config` "
            "(which still wins); reloaded on SIGHUP", metavar="FILE"),
    Setting("drain_timeout", "PULLER_DRAIN_TIMEOUT", 60.0, positive_duration,
            "on SIGTERM/SIGINT: stop accepting, let in-flight requests finish this long, exit 0",
            show=SHOW_DURATION),
    Setting("connections", "PULLER_CONNECTIONS", 1000, positive_int,
            "open client connections; beyond it the longest-waiting connection that is not in a request "
            "is closed. Lowered at start-up to fit the open-file limit", metavar="N"),
    Setting("header_timeout", "PULLER_HEADER_TIMEOUT", 10.0, positive_duration,
            "a new connection must send its request line and headers within this; also the longest "
            "wait for each read of a body", show=SHOW_DURATION),
    Setting("idle_timeout", "PULLER_IDLE_TIMEOUT", 15.0, positive_duration,
            "a keep-alive connection with no new request for this long is closed", show=SHOW_DURATION),
    Setting("write_timeout", "PULLER_WRITE_TIMEOUT", 300.0, positive_duration,
            "a client that takes none of an answer (an event stream included) for this long is closed; "
            "a slow reader is not", show=SHOW_DURATION),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def add_arguments(parser, names=None):
    """Add the flags of ``names`` (default: all) to an argparse parser; values stay text."""
    for setting in SETTINGS:
        if setting.option is None or (names is not None and setting.name not in names):
            continue
        default = setting.shown(setting.default) if setting.default is not None else "none"
        text_help = "%s (env %s; default %s)" % (setting.help.replace("`", "").replace("%", "%%"), setting.env,
                                                 default)
        if setting.switch:
            parser.add_argument(setting.option, dest=setting.name, action="store_const",
                                const="false" if setting.option.startswith("--no-") else "true", help=text_help)
        elif setting.repeat:
            parser.add_argument(setting.option, dest=setting.name, metavar=setting.shown_metavar, action="append",
                                help=text_help)
        else:
            parser.add_argument(setting.option, dest=setting.name, metavar=setting.shown_metavar, help=text_help)


def public(config):
    """What ``/debug/dump`` shows of a config: every setting but secrets, which say set/unset."""
    return {s.name: s.shown(getattr(config, s.name)) for s in SETTINGS if s.show != SHOW_NONE}


def markdown_table():
    """The README's configuration table, generated from ``SETTINGS``."""
    lines = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = "none" if s.default is None else "`%s`" % s.shown(s.default)
        flag = "`%s`" % s.option if s.option else "—"
        lines.append("| %s | `%s` | %s | %s |" % (flag, s.env, default, s.help))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m puller.settings: rewrite the README's table
    import pathlib
    import re

    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    pattern = re.compile(r"(<!-- settings table:[^\n]*-->\n).*?(\n<!-- end of settings table -->)", re.S)
    readme.write_text(pattern.sub(lambda m: m.group(1) + markdown_table() + m.group(2), readme.read_text()))
