#!/usr/bin/env bash
# Release VERSION: puller/__init__.py holds the version; galaxy.yml is set
# from it, and antsibull-changelog turns changelogs/fragments into
# changelogs/changelog.yaml and CHANGELOG.rst for that release.
#   scripts/version.sh 0.3.0
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: scripts/version.sh VERSION}
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "version.sh: $version is not X.Y.Z" >&2; exit 2; }
python=$(bash "$root/scripts/bootstrap.sh")
cd "$root"
sed -i "s/^__version__ = \".*\"/__version__ = \"$version\"/" puller/__init__.py
sed -i "s/^version: .*/version: $version/" galaxy.yml
# antsibull-changelog reads the collection's plugins with ansible-doc, which
# wants it at ansible_collections/bbklab/puller.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/ansible_collections/bbklab"
ln -s "$root" "$tree/ansible_collections/bbklab/puller"
(cd "$tree/ansible_collections/bbklab/puller" &&
  PATH="$(dirname "$python"):$PATH" ANSIBLE_COLLECTIONS_PATH="$tree" antsibull-changelog release --version "$version")
rm -f changelogs/.plugin-cache.yaml
echo "version.sh: $version in puller/__init__.py, galaxy.yml and CHANGELOG.rst" >&2
