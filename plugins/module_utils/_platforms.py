# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image platforms (``os/arch[/variant]``) as containerd reads and matches them.

One normalisation for the platform a request asks for, the node's, and an
index's entries: aliases resolved (``x86_64`` is ``amd64``, ``aarch64`` is
``arm64``) and the default variant made explicit, so that two spellings of
one platform compare equal.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

# containerd's platforms.Normalize, for the names a user or an index may write
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "armhf": "arm",
                 "armel": "arm"}
_ALIAS_VARIANTS = {"armhf": "v7", "armel": "v6"}
_OS_ALIASES = {"macos": "darwin"}
# The variant an architecture means when none is written.
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


class Platform(namedtuple("Platform", "os arch variant")):
    __slots__ = ()

    def __str__(self):
        return "/".join(part for part in self if part)


def parse_platform(text):
    """``os/arch[/variant]`` normalised as containerd does: aliases resolved,
    the default variant made explicit (``linux/arm64`` is ``linux/arm64/v8``)."""
    parts = (text or "").strip().lower().split("/")
    os_name = _OS_ALIASES.get(parts[0], parts[0])
    arch = parts[1] if len(parts) > 1 else ""
    variant = parts[2] if len(parts) > 2 else ""
    if not variant:
        variant = _ALIAS_VARIANTS.get(arch, "")
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch in ("arm", "arm64") and variant and not variant.startswith("v"):
        variant = "v" + variant
    return Platform(os_name, arch, variant or DEFAULT_VARIANTS.get(arch, ""))


def runs(platform):
    """The ``(arch, variant)`` pairs a node of ``platform`` runs, best first
    (containerd's ``platforms.Only``: an arm64 node runs 32-bit arm too, an
    amd64 node 386, and a variant the older ones)."""
    p = parse_platform(platform)
    arm = [("arm", "v%d" % n) for n in range(8, 4, -1)]
    if p.arch == "arm64":
        return [(p.arch, p.variant)] + (arm if p.variant == "v8" else [])
    if p.arch == "arm" and p.variant in [v for _a, v in arm]:
        return arm[[v for _a, v in arm].index(p.variant):]
    if p.arch == "amd64" and p.variant[1:].isdigit():
        return [("amd64", "v%d" % n) for n in range(int(p.variant[1:]), 0, -1)] + [("386", "")]
    return [(p.arch, p.variant)]


def select_manifest(index, platform):
    """The descriptor an index lists for ``platform`` (best match), or None.

    The exact platform first, then what it also runs (see ``runs``); entries
    without a platform, and attestations (``unknown/unknown``), never match.
    """
    want = parse_platform(platform)
    ranks = runs(platform)
    best, best_rank = None, len(ranks)
    for entry in index.get("manifests") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("platform"), dict):
            continue
        p = entry["platform"]
        have = parse_platform("%s/%s/%s" % (p.get("os") or "", p.get("architecture") or "", p.get("variant") or ""))
        if have.os != want.os or (have.arch, have.variant) not in ranks:
            continue
        rank = ranks.index((have.arch, have.variant))
        if rank < best_rank:
            best, best_rank = entry, rank
    return best
