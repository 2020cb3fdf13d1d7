#!/usr/bin/env bash
# Install what puller and its tests need on a fresh Debian machine (as root):
# Debian's dockerd, registry and htpasswd, and a virtualenv at .venv with the
# package in editable mode. Safe to run again; prints the venv's python path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${PULLER_VENV:-$root/.venv}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v curl >/dev/null || need+=(curl)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The status page's browser test: Debian's chromium and its driver (Selenium
# is given the driver's path, so it never downloads one).
command -v chromium >/dev/null || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
# Podman's Docker-compatible API, the hosts tests' second kind of daemon.
command -v podman >/dev/null || need+=(podman)
# The differential test of image references: Go, and Docker's own reference
# package (distribution 2.8, with go-digest) that tests/refdiff is built against.
command -v go >/dev/null || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/docker/distribution/reference ] || need+=(golang-github-docker-distribution-dev)
# Preheat copies a release into a site registry with skopeo; the fleet
# metrics test scrapes three servers with a real Prometheus.
command -v skopeo >/dev/null || need+=(skopeo)
command -v prometheus >/dev/null || need+=(prometheus)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -e "${root}[test]" >&2
echo "$venv/bin/python"
