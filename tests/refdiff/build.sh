#!/usr/bin/env bash
# Build the refdiff program (main.go beside this file) into $1, offline: GOPATH
# mode against Debian's golang-github-docker-distribution-dev (scripts/bootstrap.sh
# installs it), so no module download and no go.mod.
set -euo pipefail
out=$(realpath -m "${1:?usage: build.sh OUTPUT}")
here=$(cd "$(dirname "$0")" && pwd)
gocode=/usr/share/gocode
if ! command -v go >/dev/null; then
  echo "refdiff: no go toolchain (apt-get install golang-go)" >&2; exit 1
fi
if [ ! -d "$gocode/src/github.com/docker/distribution/reference" ]; then
  echo "refdiff: no $gocode/src/github.com/docker/distribution/reference (apt-get install golang-github-docker-distribution-dev)" >&2
  exit 1
fi
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
cd "$here"
GO111MODULE=off GOPATH=$gocode GOFLAGS='' GOPROXY=off GOCACHE=$cache CGO_ENABLED=0 go build -o "$out" .
