# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a ``docker-credential-<name>`` helper the way docker-py does, but bounded.

docker-py's ``docker.credentials.Store`` runs the helper with
``subprocess.check_output``: no timeout, its whole output in memory, and that
output (which may hold a secret) quoted in its error. ``BoundedStore`` keeps
docker-py's interface (``docker.auth`` decides which helper to run and asks
the store) and replaces how the helper runs:

- it runs in a session of its own, and its whole process group is killed at
  the deadline, on cancel, or when it writes more than ``MAX_OUTPUT``;
- its answer is read from a pipe in slices, so a cancel is seen within
  ``POLL`` seconds; under the server's gevent patching, ``subprocess`` and
  ``selectors`` are gevent's and the wait is cooperative;
- its stderr is discarded and its stdout never quoted: errors say what went
  wrong (exit status, not JSON, no ``Username``), never what it printed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import selectors
import signal
import subprocess
import time
import warnings

try:
    from docker.auth import AuthConfig
    from docker.credentials import CredentialsNotFound, Store, StoreError
    from docker.credentials.utils import create_environment_dict
except ImportError:  # pragma: no cover - the Ansible module reports docker missing before it gets here
    AuthConfig = dict
    Store = object

    class StoreError(Exception):
        pass

    class CredentialsNotFound(StoreError):
        pass

    def create_environment_dict(overrides):
        env = dict(os.environ)
        env.update(overrides or {})
        return env

MAX_OUTPUT = 1 << 20  # an answer is a small JSON object; more than this is not one
POLL = 0.1  # how often a running helper checks for a cancel
_NOT_FOUND = b"credentials not found in native keychain"  # what docker's helpers say for an unknown registry


class HelperError(StoreError):
    """The helper could not answer; ``message`` is safe to show, ``timed_out`` tells a deadline from a failure."""

    def __init__(self, message, timed_out=False):
        super(HelperError, self).__init__(message)
        self.message = message
        self.timed_out = timed_out


class BoundedAuthConfig(AuthConfig):
    """``docker.auth.AuthConfig`` (docker-py 7) whose helpers run as ``BoundedStore``: set
    ``deadline_at`` and ``cancel`` before resolving."""

    deadline_at = None
    cancel = None

    def _get_store_instance(self, name):
        if name not in self._stores:
            self._stores[name] = BoundedStore(name, environment=self._credstore_env, deadline_at=self.deadline_at,
                                              cancel=self.cancel)
        return self._stores[name]


class BoundedStore(Store):
    """``docker.credentials.Store`` whose helper runs until ``deadline_at``
    (``time.monotonic()``; None: no deadline) or until ``cancel.is_set()``."""

    def __init__(self, program, environment=None, deadline_at=None, cancel=None):
        with warnings.catch_warnings():  # a missing helper is this image's error, not a warning on stderr
            warnings.simplefilter("ignore")
            super(BoundedStore, self).__init__(program, environment=environment)
        self.deadline_at = deadline_at
        self.cancel = cancel

    def get(self, server):
        """The helper's ``{"Username": ..., "Secret": ...}`` for ``server``, checked before anyone reads it."""
        if not isinstance(server, bytes):
            server = server.encode("utf-8")
        data = self._execute("get", server)
        try:
            result = json.loads(data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError is one
            raise HelperError("%s answered with something that is not JSON" % self.program)
        if not isinstance(result, dict) or not all(isinstance(result.get(k), str) for k in ("Username", "Secret")):
            raise HelperError("%s answered without a Username and Secret" % self.program)
        if result["Username"] == "" and result["Secret"] == "":
            # As docker-py: some helpers answer an empty object for a registry they do not know.
            raise CredentialsNotFound("No matching credentials in %s" % self.program)
        return result

    def _execute(self, subcmd, data_input):
        if self.exe is None:
            raise HelperError("%s is not installed or not in PATH" % self.program)
        proc, out = self._start(subcmd, data_input)
        stopped = True
        try:
            output = self._read(proc, out)
            self._wait(proc)
            stopped = False
        finally:
            os.close(out)
            if stopped:
                _kill_group(proc)
        if proc.returncode != 0:
            if _NOT_FOUND in output:
                raise CredentialsNotFound("No matching credentials in %s" % self.program)
            raise HelperError("%s exited with status %d" % (self.program, proc.returncode))
        return output

    def _start(self, subcmd, data_input):
        """The helper process, and the read end of its stdout."""
        in_read, in_write = os.pipe()
        out_read, out_write = os.pipe()
        try:
            # Written before the helper starts: a registry's address is far
            # below a pipe's buffer, so this cannot block, whatever the helper does.
            if data_input:
                os.write(in_write, data_input)
            os.close(in_write)
            in_write = None
            proc = subprocess.Popen([self.exe, subcmd], stdin=in_read, stdout=out_write, stderr=subprocess.DEVNULL,
                                    env=create_environment_dict(self.environment), close_fds=True,
                                    start_new_session=True)
        except OSError as exc:
            os.close(out_read)
            if exc.errno == errno.ENOENT:
                raise HelperError("%s is not installed or not in PATH" % self.program)
            raise HelperError("%s cannot run: %s" % (self.program, exc.strerror or type(exc).__name__))
        finally:
            for fd in (in_read, in_write, out_write):
                if fd is not None:
                    os.close(fd)
        return proc, out_read

    def _left(self):
        """Seconds to wait now, at most ``POLL``; raises when cancelled or past the deadline."""
        if self.cancel is not None and self.cancel.is_set():
            raise HelperError("%s was stopped: the pull was cancelled" % self.program)
        if self.deadline_at is None:
            return POLL
        left = self.deadline_at - time.monotonic()
        if left <= 0:
            raise HelperError("%s did not answer within the image's deadline and was stopped" % self.program,
                              timed_out=True)
        return min(POLL, left)

    def _read(self, proc, fd):
        chunks, size = [], 0
        selector = selectors.DefaultSelector()
        try:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if not selector.select(self._left()):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise HelperError("%s answered with more than %d KiB" % (self.program, MAX_OUTPUT // 1024))
                chunks.append(chunk)
        finally:
            selector.close()

    def _wait(self, proc):
        """Its output is complete; wait for its exit under the same deadline."""
        while True:
            try:
                proc.wait(timeout=self._left())
                return
            except subprocess.TimeoutExpired:
                continue


def _kill_group(proc):
    """The helper and whatever it started: it leads a session of its own, so its pid is the group's."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:  # already gone
        pass
    proc.wait()
