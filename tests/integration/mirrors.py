"""Real registries for the mirror tests: an origin behind a counting proxy, and
``docker-registry`` processes as pull-through caches (``proxy: remoteurl``) or
as plain registries (a rogue "mirror" with content of its own)."""

import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A ``docker-registry`` process on a loopback port, with its own storage."""

    def __init__(self, workdir, remote=None, htpasswd=None):
        self.port = free_port()
        self.address = "localhost:%d" % self.port
        self.dir = Path(workdir) / ("registry-%d" % self.port)
        (self.dir / "data").mkdir(parents=True)
        lines = ["version: 0.1", "log: {level: warn}",
                 "storage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}" % (self.dir / "data"),
                 "http: {addr: 127.0.0.1:%d}" % self.port]
        if remote:
            # A pull-through cache. (In front of a basic-auth origin distribution
            # 2.8 answers "manifest unknown", with or without proxy.username and
            # password: see the README's mirrors section.)
            lines.append("proxy: {remoteurl: %s}" % remote)
        if htpasswd:
            lines.append("auth: {htpasswd: {realm: puller-mirror, path: %s}}" % htpasswd)
        config = self.dir / "config.yml"
        config.write_text("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _i in range(100):
            try:
                requests.get("http://127.0.0.1:%d/v2/" % self.port, timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("registry on %d did not start" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def htpasswd_file(path, user, password):
    line = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True,
                          text=True).stdout.strip()
    Path(path).write_text(line + "\n")
    return str(path)


def push(ground, source, target):
    """Put ``source`` (pulled from the test registry) at ``target`` through the ground's own daemon."""
    client = ground.client()
    name, _sep, tag = source.rpartition(":")
    client.pull(name, tag=tag)
    tname, _sep, ttag = target.rpartition(":")
    client.tag(source, tname, ttag)
    for line in client.push(tname, tag=ttag, stream=True, decode=True):
        assert "error" not in line, line
    client.remove_image(target)
    return client.inspect_distribution(target)["Descriptor"]["digest"]


def layer_digests(registry, repository, tag="latest"):
    """The layer digests of ``repository:tag`` in the registry at ``registry`` (host:port)."""
    manifest = requests.get("http://%s/v2/%s/manifests/%s" % (registry, repository, tag), timeout=10, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
    manifest.raise_for_status()
    return [layer["digest"] for layer in manifest.json()["layers"]]
