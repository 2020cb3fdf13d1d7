# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running ``skopeo copy --all --preserve-digests`` for a preheat, under the attempt's watch.

Credentials reach skopeo only through auth files (``containers-auth.json``),
mode 0600 in a private 0700 directory removed after the copy: never on its
command line (``/proc/PID/cmdline`` is world-readable), never in its
environment. With ``--authfile`` skopeo 1.9.3 still falls back to the user's
``~/.config/containers/auth.json``, ``~/.docker/config.json`` and
``~/.dockercfg`` (its debug output names each file it tries), so the child's
``HOME``, ``XDG_CONFIG_HOME``, ``XDG_RUNTIME_DIR`` and ``DOCKER_CONFIG`` are the
private directory too: a copy uses the credentials of its request, not the
files of whoever runs it. Its environment is a short list of the caller's
(``PATH``, locale, proxies, CA bundle), so nothing else of the server's
reaches it either.

Plain HTTP (``--*-tls-verify=false``, which skopeo treats as dockerd treats
``--insecure-registry``: HTTPS without verification, then HTTP) only for
loopback hosts and the hosts named insecure; ``=true`` everywhere else, said
explicitly so that no ``registries.conf`` entry can weaken it. The host's
``/etc/containers`` (trust policy, ``registries.conf`` with its mirrors and
credential helpers, certificates) applies as to any skopeo run there: it is
the administrator's; where it has no policy at all, the copy gets one
that accepts any image: the bytes are copied as they are, under their digests,
and the hosts that pull them apply their own.

The process leads a process group of its own, killed (SIGKILL) by the watch's
abort (deadline, stall, cancel) and by a backstop of our own, while skopeo's
``--command-timeout`` ends it should this process die first. Signs of life: a
debug line, a bar whose figures moved (``_skopeo_output``), and the bytes
skopeo has read (``rchar`` of ``/proc/PID/io``, polled every ``POLL``
seconds), which tracks the bytes from the network within 0.5 % (a 48 MiB
copy: 50 563 319 read, 50 348 842 sent by the origin's proxy). A stalled
copy reads a byte now and then (``MIN_READ``) while its bars are redrawn:
neither is a sign of life.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import errno
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

from ._errors import DeadlineExceeded, PermanentPullError
from ._registry import credentials_for, plain_http_allowed, registry_host
from ._skopeo_output import CopyOutput, LineBuffer

POLL = 0.5  # seconds between two looks at the bytes read
# Bytes read between two looks that make a sign of life. A copy that waits
# on a silent connection still reads a few bytes a second (the Go runtime
# waking its network poller), so a handful of bytes is not progress.
MIN_READ = 256
PTY_COLUMNS = 250  # wide enough that no bar is cut to an ellipsis
EXIT_GRACE = 5.0  # from the end of its output to its exit, at most
BACKSTOP_GRACE = 5.0  # after the watch's deadline, our own kill, should the watchdog have failed
SYSTEM_POLICY = "/etc/containers/policy.json"
ACCEPT_ANYTHING = {"default": [{"type": "insecureAcceptAnything"}]}
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR", "SSL_CERT_FILE",
              "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def tls_verify(host, insecure_registries=()):
    """``"false"`` (plain HTTP allowed) for loopback and insecure hosts, else ``"true"``."""
    return "false" if plain_http_allowed(host, insecure_registries) else "true"


def auth_entry(auth_config):
    """The ``containers-auth.json`` entry of an ``auth_config``, or None without credentials."""
    auth = auth_config or {}
    if auth.get("registrytoken"):
        raise PermanentPullError("a registrytoken cannot be given to skopeo without its command line; give a "
                                 "username and password, or an identitytoken")
    encoded = auth.get("auth") or ""
    user, password = auth.get("username") or "", auth.get("password") or ""
    if not encoded and (user or password):
        encoded = _b64("%s:%s" % (user, password))
    token = auth.get("identitytoken")
    if token:
        # skopeo reads an identity token only beside an ``auth`` it can split
        # at the colon; Docker writes the user "<token>" for it.
        return {"auth": encoded or _b64("%s:" % (user or "<token>")), "identitytoken": token}
    return {"auth": encoded} if encoded else None


def auth_document(domain, auth_config):
    """The auth file for a copy from or to ``domain``: its credentials, or none (``{"auths": {}}``)."""
    entry = auth_entry(credentials_for(registry_host(domain), auth_config))
    return {"auths": {domain: entry} if entry else {}}


def _b64(text):
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def child_env(home, environ=None):
    """skopeo's environment: a few of ``environ``'s variables, and ``home`` for everything it would look up."""
    environ = os.environ if environ is None else environ
    env = dict((key, environ[key]) for key in PASSED_ENV if key in environ)
    env.setdefault("PATH", os.defpath)
    env.update(HOME=home, XDG_CONFIG_HOME=os.path.join(home, "config"), XDG_RUNTIME_DIR=home,
               DOCKER_CONFIG=os.path.join(home, "docker"))
    # Where skopeo keeps which blobs each registry has (for cross-repository
    # mounts at the site) stays the user's own: it holds no credentials.
    data_home = environ.get("XDG_DATA_HOME") or (
        os.path.join(environ["HOME"], ".local", "share") if environ.get("HOME") else None)
    if data_home:
        env["XDG_DATA_HOME"] = data_home
    return env


class Workspace:
    """The private directory of one copy: auth files, digest file, policy; removed on exit."""

    def __init__(self, source_domain, source_auth, dest_domain, dest_auth, environ=None):
        self._docs = (auth_document(source_domain, source_auth), auth_document(dest_domain, dest_auth))
        self._environ = environ
        self.dir = self.source_auth = self.dest_auth = self.digestfile = self.policy = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="puller-skopeo-")  # 0700
        try:
            self.source_auth = _write_private(os.path.join(self.dir, "source-auth.json"), self._docs[0])
            self.dest_auth = _write_private(os.path.join(self.dir, "dest-auth.json"), self._docs[1])
            self.digestfile = os.path.join(self.dir, "digest")
            if not os.path.exists(SYSTEM_POLICY):
                self.policy = _write_private(os.path.join(self.dir, "policy.json"), ACCEPT_ANYTHING)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def env(self):
        return child_env(self.dir, self._environ)

    def digest(self):
        """What skopeo wrote to ``--digestfile``: the digest of the manifest or index copied, or None."""
        try:
            with open(self.digestfile) as fh:
                text = fh.read(200).strip()
        except (IOError, OSError):
            return None
        return text if text.startswith("sha256:") else None


def _write_private(path, document):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh)
    return path


def copy_command(skopeo, source, dest, workspace, source_tls="true", dest_tls="true", command_timeout=None):
    """The argument vector of one copy (``source``, ``dest``: ``host/path:tag`` or ``host/path@digest``)."""
    argv = [skopeo, "--debug"]
    if command_timeout:
        argv += ["--command-timeout", "%ds" % max(1, int(command_timeout + 0.999))]
    if workspace.policy:
        argv += ["--policy", workspace.policy]
    return argv + ["copy", "--all", "--preserve-digests", "--retry-times", "0",
                   "--digestfile", workspace.digestfile,
                   "--src-tls-verify=" + source_tls, "--dest-tls-verify=" + dest_tls,
                   "--src-authfile", workspace.source_auth, "--dest-authfile", workspace.dest_auth,
                   "docker://" + source, "docker://" + dest]


def read_rchar(pid):
    """Bytes the process has read so far (sockets included), or None when it cannot be known."""
    try:
        with open("/proc/%d/io" % pid) as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (IOError, OSError, ValueError):
        return None
    return None


def kill_group(proc):
    """SIGKILL to the copy's process group (it leads a session of its own)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass


def _open_pty():
    """A pseudo-terminal for skopeo's bars (``(master, slave)``), or ``(None, None)`` where there is none."""
    try:
        import fcntl  # pylint: disable=import-outside-toplevel  # POSIX only, as skopeo is
        import struct  # pylint: disable=import-outside-toplevel
        import termios  # pylint: disable=import-outside-toplevel
        master, slave = os.openpty()
    except (ImportError, OSError):
        return None, None
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, PTY_COLUMNS, 0, 0))
    except (IOError, OSError):
        pass
    return master, slave


def run_copy(argv, env, watch, timeout_message):
    """Run one copy to its end under ``watch``; its ``CopyOutput``, or the attempt's error."""
    output = CopyOutput()
    master, slave = _open_pty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave if slave is not None else subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, close_fds=True, start_new_session=True)
    except OSError as exc:
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
        if exc.errno == errno.ENOENT:
            raise PermanentPullError("%s is not installed or not in PATH" % argv[0])
        raise PermanentPullError("%s cannot run: %s" % (argv[0], exc.strerror or type(exc).__name__))
    if slave is not None:
        os.close(slave)
    watch.on_abort(lambda: kill_group(proc))
    backstopped = False
    try:
        backstopped = _follow(proc, master if master is not None else proc.stdout.fileno(),
                              proc.stderr.fileno(), output, watch)
        try:  # its output has ended: it is exiting, give it the moment that takes
            proc.wait(timeout=EXIT_GRACE)
        except subprocess.TimeoutExpired:
            pass
    finally:
        kill_group(proc)  # whatever ended the reading, nothing of the copy outlives it
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        if master is not None:
            os.close(master)
    if watch.fired:
        raise watch.error(timeout_message)
    if backstopped:
        raise DeadlineExceeded(timeout_message)
    return output, proc.returncode


def _follow(proc, out_fd, err_fd, output, watch):
    """Read both streams until they end, calling ``watch.alive()`` and sending events; True at the backstop."""
    buffers = {out_fd: LineBuffer(), err_fd: LineBuffer()}
    selector = selectors.DefaultSelector()
    rchar = None
    past_deadline = None  # since when the watch has said no time is left (its deadline may move later)
    try:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        next_poll = time.monotonic() + POLL
        while buffers:
            for key, _mask in selector.select(max(0.0, next_poll - time.monotonic())):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's other end closed with the process
                    chunk = b""
                lines = buffers[fd].feed(chunk) if chunk else buffers[fd].rest()
                if not chunk:
                    selector.unregister(fd)
                    del buffers[fd]
                if _feed(output, lines, fd == err_fd):
                    watch.alive()
            for kind, detail in output.take():
                watch.emit(kind, detail)
            now = time.monotonic()
            if now < next_poll:
                continue
            next_poll = now + POLL
            seen = read_rchar(proc.pid)
            if seen is not None and rchar is not None and seen - rchar >= MIN_READ:
                watch.alive()
            rchar = seen
            if _remaining(watch) > 0:
                past_deadline = None
            elif past_deadline is None:
                past_deadline = now
            elif now - past_deadline > BACKSTOP_GRACE:  # the watchdog should have stopped it by now
                kill_group(proc)
                return True
    finally:
        selector.close()
    return False


def _remaining(watch):
    remaining = getattr(watch, "remaining", None)
    return remaining() if callable(remaining) else 1.0


def _feed(output, lines, from_stderr):
    alive = False
    for line in lines:
        if from_stderr:
            output.stderr_line(line)
            alive = True
        elif output.stdout_line(line):
            alive = True
    return alive
