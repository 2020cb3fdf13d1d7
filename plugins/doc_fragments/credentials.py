# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry credentials of the modules: the origin's and each mirror's (or site's) own."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  auth_config:
    description:
      - Registry credentials for every item that has no C(auth_config) of its own.
    type: dict
    suboptions:
      username:
        description: Registry user name.
        type: str
      password:
        description: Registry password.
        type: str
      auth:
        description: Base64 of C(username:password), as in C(~/.docker/config.json).
        type: str
      email:
        description: E-mail address, for registries that still want one.
        type: str
      serveraddress:
        description: Registry address the credentials belong to.
        type: str
      identitytoken:
        description: Identity token (OAuth refresh token) for the registry.
        type: str
      registrytoken:
        description: Bearer token for the registry.
        type: str
  mirror_auth:
    description:
      - Credentials per mirror host (for a preheat, per site); a dict whose keys are hosts and whose values are
        dicts with the keys of O(auth_config). A mirror never gets the origin's credentials. Passwords and tokens
        are masked in the output.
    type: dict
  host_credentials:
    description:
      - In direct mode, images without O(auth_config) use the managed host's Docker credentials, as C(docker pull)
        there would (C(config.json) from E(DOCKER_CONFIG) or C(~/.docker), its C(auths), C(credsStore) and
        C(credHelpers)). In API mode the server decides (its C(--host-credentials) is off by default).
      - With the CRI runtime on a host without the C(docker) library there are none to read; the node's containerd
        then applies the credentials of its own configuration to images without O(auth_config).
    type: bool
    default: true
"""
