#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: preheat
short_description: Copy a release from its origin registry into a site registry once, byte for byte
version_added: 0.3.0
description:
  - Copies each image from its origin into the registry O(to), under the same path and tag, with
    C(skopeo copy --all --preserve-digests). Manifests keep their bytes and digests, a multi-platform index goes
    whole, and blobs the site already has are skipped, so the origin serves a release once per site.
  - Each row carries the digest it resolved. Give the task's registered RV(success) rows to
    M(bbklab.puller.prefetch) as its O(bbklab.puller.prefetch#module:images), with the site as the origin's
    mirror, and every host pulls by digest from the site without asking the origin anything.
  - Meant to run once per site, with C(run_once) or C(delegate_to).
  - B(Direct mode) (no O(api_url)) runs C(skopeo) on the managed host. B(API mode) (O(api_url) set) makes the copy a
    C(preheat) job of a running C(puller serve), which copies only to sites its operator named with
    C(--preheat-site).
  - Retries, the deadline per image and the rows are those of M(bbklab.puller.prefetch).
author:
  - puller developers (@bbklab)
requirements:
  - "skopeo (the program, on the managed host), in direct mode"
extends_documentation_fragment:
  - bbklab.puller.credentials
  - bbklab.puller.api
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: partial
    details:
      - Nothing is copied; every image is reported as one that would be copied.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  to:
    description:
      - The site registry, V(HOST) or V(HOST:PORT). The site's credentials are the O(mirror_auth) entry of that
        host.
    type: str
    required: true
  images:
    description:
      - The images to copy, at their origin. Each item is either a reference string or a dictionary with the keys
        C(image), C(tag), C(project) and C(auth_config), as for M(bbklab.puller.prefetch).
    type: list
    elements: raw
    required: true
  concurrency:
    description: How many images are copied at once.
    type: int
    default: 4
  retry:
    description: Attempts per image (1 means no retry). Permanent errors (unauthorized, not found) are never retried.
    type: int
    default: 3
  deadline:
    description: Deadline per image, covering all its attempts, as a Go duration (V(30m), V(90s)) or seconds.
    type: str
    default: 30m
  insecure_registries:
    description:
      - Registries that may be spoken to in plain HTTP, as the Docker daemon's C(insecure-registries). Loopback
        registries always may; any other is spoken to over HTTPS, its certificate verified.
      - In API mode the server's own C(--insecure-registry) applies instead.
    type: list
    elements: str
    default: []
  ignore_failures:
    description: Do not fail the task when some images fail; they are still listed in RV(failure).
    type: bool
    default: false
notes:
  - The origin's credentials and the site's go to C(skopeo) in a file of mode 0600 that only that copy reads, never
    on a command line.
seealso:
  - module: bbklab.puller.prefetch
"""

EXAMPLES = r"""
- name: Fill the site registry once
  bbklab.puller.preheat:
    to: registry.site-a.example:5000
    images:
      - registry.example.com/team/app:2.4.1
      - registry.example.com/team/worker:2.4.1
    mirror_auth:
      registry.site-a.example:5000:
        username: site-writer
        password: "{{ vault_site_password }}"
  run_once: true
  delegate_to: "{{ groups['site_a'][0] }}"
  register: preheat

- name: Every host pulls from the site, by digest, without the origin
  bbklab.puller.prefetch:
    images: "{{ preheat.success }}"
    mirrors:
      registry.example.com: [registry.site-a.example:5000]
"""

RETURN = r"""
success:
  description: One row per image copied, in request order; the rows of M(bbklab.puller.prefetch) with three more keys.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image as requested.
      type: str
      sample: registry.example.com/team/app
    tag:
      description: The tag (or digest) as requested or defaulted.
      type: str
      sample: 2.4.1
    digest:
      description: The digest of the manifest (or index) copied, the same at the origin and at the site.
      type: str
      sample: sha256:6e5e5edf47af24ef7fa020299c63b5d645d81e1cfbddef12fb7f2d74b1cfe958
    site:
      description: The site registry.
      type: str
      sample: registry.site-a.example:5000
    bytes_copied:
      description: Blob bytes sent to the site; 0 when it had every layer already.
      type: int
      sample: 41943040
    blobs_skipped:
      description: Blobs the site had already.
      type: int
      sample: 0
failure:
  description: One row per image that failed, same keys as RV(success).
  returned: always
  type: list
  elements: dict
copied:
  description: References whose copy sent bytes to the site (in check mode, every reference).
  returned: always
  type: list
  elements: str
  sample: [registry.example.com/team/app:2.4.1]
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bbklab.puller.plugins.module_utils._clients import ApiClient, PreheatClient
from ansible_collections.bbklab.puller.plugins.module_utils._connection import (
    api_argument_spec, credentials_argument_spec, hide_item_credentials, request_body)
from ansible_collections.bbklab.puller.plugins.module_utils._credentials import HostCredentials
from ansible_collections.bbklab.puller.plugins.module_utils._daemon import HAS_DOCKER
from ansible_collections.bbklab.puller.plugins.module_utils._engine import row_reference
from ansible_collections.bbklab.puller.plugins.module_utils._errors import InvalidRequest, PullerError
from ansible_collections.bbklab.puller.plugins.module_utils._godur import parse_duration
from ansible_collections.bbklab.puller.plugins.module_utils._mirrors import normalize_host
from ansible_collections.bbklab.puller.plugins.module_utils._preheat import parse_preheat_request


class ImagePreheater:
    """Builds the preheat request from the module's options, runs it, shapes the result."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params

    def request_body(self):
        return dict(request_body(self.params, self.module.check_mode), preheat={"to": self.params["to"]})

    def run(self):
        body = self.request_body()
        parse_preheat_request(body)  # fail before any copy, naming the option or image
        report = self.client.pull(body)
        success, failure = report["success"], report["failure"]
        copied = [row_reference(row) for row in success
                  if row.get("bytes_copied") or row["status"] == "would_pull"]
        result = {"changed": bool(copied), "success": success, "failure": failure, "copied": copied}
        if failure and not self.params["ignore_failures"]:
            failed = ["%s (%s)" % (row_reference(row), row["errmsg"]) for row in failure]
            self.module.fail_json(msg="failed to copy %d image(s) to %s: %s" % (
                len(failed), self.params["to"], "; ".join(failed)), **result)
        return result


def main():
    argument_spec = credentials_argument_spec()
    argument_spec.update(api_argument_spec())
    argument_spec.update(
        to=dict(type="str", required=True),
        images=dict(type="list", elements="raw", required=True),
        concurrency=dict(type="int", default=4),
        retry=dict(type="int", default=3),
        deadline=dict(type="str", default="30m"),
        insecure_registries=dict(type="list", elements="str", default=[]),
        ignore_failures=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    hide_item_credentials(module)
    params = module.params
    try:
        deadline = parse_duration(params["deadline"])
        insecure = [normalize_host(host, "insecure_registries") for host in params["insecure_registries"]]
    except ValueError as exc:
        module.fail_json(msg="deadline: %s" % exc)
    except InvalidRequest as exc:
        module.fail_json(msg="%s: %s" % (exc.field, exc.message))
    if params["api_url"]:
        waves = -(-max(1, len(params["images"])) // max(1, params["concurrency"]))
        client = ApiClient(module, params["api_url"], params["api_token"],
                           wait_timeout=params["wait_timeout"] or deadline * waves + 60)
    else:
        credentials = HostCredentials() if params["host_credentials"] and HAS_DOCKER else None
        client = PreheatClient(params["to"], deadline, max(1, params["concurrency"]),
                               site_auth=params["mirror_auth"], insecure_registries=insecure,
                               credentials=credentials)
    try:
        module.exit_json(**ImagePreheater(module, client).run())
    except InvalidRequest as exc:
        module.fail_json(msg="%s: %s" % ((exc.field or "images").replace("preheat.to", "to"), exc.message))
    except PullerError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
