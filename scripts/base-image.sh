#!/usr/bin/env bash
# Provide debian:bookworm-slim to a Docker daemon without Docker Hub: a
# debootstrap (minbase) of Debian bookworm from Debian's own mirror, imported
# under that tag. Like a company base image it trusts what this host trusts:
# the host's CA bundle is copied in and PIP_CERT points at it, because PyPI is
# reached through a TLS-inspecting proxy here. The Dockerfile itself stays
# plain. The rootfs tarball is cached in $PULLER_CACHE (default
# /var/cache/puller-test) so later runs on the same machine skip debootstrap.
#   scripts/base-image.sh DOCKER_HOST_URL
set -euo pipefail
host=$1
tag=debian:bookworm-slim
cache=${PULLER_CACHE:-/var/cache/puller-test}
tarball=$cache/bookworm-minbase.tar
if docker -H "$host" image inspect "$tag" >/dev/null 2>&1; then exit 0; fi
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  mkdir -p "$cache"
  rootfs=$(mktemp -d /tmp/puller-rootfs-XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "base-image: debootstrap bookworm (minbase) into $rootfs" >&2
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1
  mkdir -p "$rootfs/etc/ssl"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/host-ca-bundle.crt"
  rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
fi
docker -H "$host" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV PIP_CERT=/etc/ssl/host-ca-bundle.crt' \
  --change 'CMD ["bash"]' "$tarball" "$tag" >/dev/null
