#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: prefetch
short_description: Pull many container images onto a Docker host or a Kubernetes node at once, with retries
version_added: 0.1.0
description:
  - Pulls a list of images into the host's Docker daemon concurrently, retrying transient registry errors
    (5xx, rate limits, resets, timeouts) with exponential backoff and failing fast on permanent ones
    (unauthorized, not found, invalid reference).
  - B(Direct mode) (no O(api_url)) drives the daemon at O(docker_host) through puller's engine, with threads.
    The managed host needs only the C(docker) Python library.
  - On a Kubernetes node, direct mode drives the node's CRI runtime (containerd) at O(runtime_endpoint) instead,
    where the kubelet finds the images; the managed host then needs only the C(grpcio) and C(protobuf) libraries.
  - B(API mode) (O(api_url) set) posts the same request to a running C(puller serve).
  - Duplicate entries are pulled once; every entry still gets its own result row.
author:
  - puller developers (@bbklab)
requirements:
  - "docker >= 7.1 (Python library), in direct mode with the Docker API only"
  - "grpcio and protobuf >= 3.20 (Python libraries), in direct mode with the CRI runtime only"
extends_documentation_fragment:
  - bbklab.puller.docker
  - bbklab.puller.runtime
  - bbklab.puller.credentials
  - bbklab.puller.api
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying the target.
    support: partial
    details:
      - Nothing is pulled. With O(pull=missing) the module reports exactly which images would be pulled.
      - With O(pull=always), images already present may still be updated by a real run; check mode
        cannot know that without pulling, so it reports changes only for images that are absent.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows the local image ID of every requested image before and after.
options:
  images:
    description:
      - The images to pull. Each item is either a reference string (V(busybox), V(reg:5000/a/b:t),
        V(repo@sha256:...)) or a dictionary with the API's keys C(image), C(tag), C(project), C(platform),
        C(digest) and C(auth_config); other keys are ignored, so the C(success) rows a M(bbklab.puller.preheat)
        task registered can be given as they are.
      - An item's C(digest) (a preheat's row has it) pins its tag to that content. The image is pulled by digest
        through O(mirrors) (the site the preheat filled), without asking the origin anything, verified against
        the digest, then tagged with its origin's name and tag. With the Docker API the image also keeps the
        site's digest reference (C(site/path@sha256:...)), its record of the digest; C(docker run
        origin/path@sha256:...) on a host that cannot reach the origin needs that digest under the origin's name,
        which the Docker daemon records only for pulls from the origin, so run it by tag there. On a CRI node
        the image is held as C(origin/path@sha256:...) (containerd's C(hosts.toml) sends it to the site) and
        gets no tag.
      - An item's C(auth_config) takes the same keys as O(auth_config) and is never logged.
    type: list
    elements: raw
    required: true
  concurrency:
    description: How many images are pulled at once.
    type: int
    default: 10
  retry:
    description: Attempts per image (1 means no retry). Permanent errors are never retried.
    type: int
    default: 3
  deadline:
    description:
      - Deadline per image, covering all its attempts, as a Go duration (V(30m), V(90s)) or seconds. Defaults to
        V(30m).
      - Called O(timeout) in 0.1.0. Since 0.2.0 O(timeout) is the daemon API's timeout, as in community.docker.
        A task that sets O(timeout) but not O(deadline) gets a warning saying so; set O(deadline) to silence it.
    type: str
    version_added: 0.2.0
  pull:
    description:
      - V(always) asks the registry for every image, so present images are updated (like C(docker pull)).
      - V(missing) pulls only images that are not present on the host.
    type: str
    choices: [always, missing]
    default: always
  mirrors:
    description:
      - Mirrors to try, in order, before the origin, per registry host (V(docker.io) included); a dict whose
        keys are registry hosts and whose values are lists of mirror hosts (see the examples). A registry mapped
        to an empty list uses only the origin.
      - For a tag, the origin is asked for its current digest first (one manifest request, no layers) and the
        mirror is asked for that digest, so a stale mirror cannot serve an old copy. The image is tagged with
        its canonical name and the mirror's name is removed. A mirror that fails is skipped (once per image) and
        the next mirror or the origin is used; the rows say which endpoint served each image (C(source)).
      - In direct mode these mirrors are trusted (they are the playbook's). In API mode they are sent with the
        request, and the server uses them only if it allows request mirrors.
      - Warm the mirror from one host first (a task with C(run_once=true)), then fan out to all hosts.
    type: dict
  allow_registries:
    description:
      - Registries images may come from, as shell-style patterns (V(registry.example.com), V(*.corp.example),
        V(docker.io)). The task fails naming the image before anything is pulled when one comes from another
        registry. Empty allows any.
    type: list
    elements: str
    default: []
  ignore_failures:
    description: Do not fail the task when some images fail; they are still listed in RV(failure).
    type: bool
    default: false
notes:
  - Put shared options (O(api_url), O(api_token), O(auth_config)) in C(module_defaults) with the
    C(group/bbklab.puller.puller) action group.
seealso:
  - name: puller API
    description: The request and result schema shared with the module.
    link: https://github.com/bbklab/puller
"""

EXAMPLES = r"""
- name: Prefetch the release's images on every host
  bbklab.puller.prefetch:
    images:
      - busybox:1.36
      - registry.example.com:5000/team/app:2.4.1
      - image: registry.example.com:5000/team/private
        tag: "2.4.1"
        project: billing
        auth_config:
          username: deploy
          password: "{{ vault_registry_password }}"
    concurrency: 10
    retry: 3

- name: Only what is missing, through a puller server, with shared defaults
  module_defaults:
    group/bbklab.puller.puller:
      api_url: http://127.0.0.1:9006
      api_token: "{{ vault_puller_token }}"
  bbklab.puller.prefetch:
    images: "{{ release_images }}"
    pull: missing

# With release_mirrors set to {"registry.example.com": ["mirror.example.com:5000"]}
# and release_mirror_auth to {"mirror.example.com:5000": {"username": ..., "password": ...}}:
- name: Warm the mirror from one host
  bbklab.puller.prefetch:
    images: "{{ release_images }}"
    mirrors: "{{ release_mirrors }}"
    mirror_auth: "{{ release_mirror_auth }}"
  run_once: true

- name: Then fan out to every host through the mirror
  bbklab.puller.prefetch:
    images: "{{ release_images }}"
    mirrors: "{{ release_mirrors }}"
    mirror_auth: "{{ release_mirror_auth }}"

- name: Prefetch a Kubernetes node's images into its containerd (kubespray's socket), only what is missing
  bbklab.puller.prefetch:
    images: "{{ cluster_images }}"
    runtime_endpoint: unix:///run/containerd/containerd.sock
    pull: missing

- name: Pin by digest and keep going when one image fails
  bbklab.puller.prefetch:
    images:
      - registry.example.com/team/app@sha256:8c3f0c3e0a2a31f6a5ce55c4f41c0a3d8e7e1e3c3a3f0c3e0a2a31f6a5ce55c4
    ignore_failures: true
  register: prefetch

- name: Show what failed
  ansible.builtin.debug:
    var: prefetch.failure
"""

RETURN = r"""
success:
  description: One row per requested image that is now present, in request order.
  returned: always
  type: list
  elements: dict
  contains:
    image:
      description: The image as requested.
      type: str
      sample: busybox
    tag:
      description: The tag (or digest) as requested or defaulted.
      type: str
      sample: latest
    project:
      description: Echoed from the request.
      type: str
      sample: billing
    cost:
      description: Time taken, as a Go duration string.
      type: str
      sample: 1.204s
    retried:
      description: Attempts made (0 when nothing was pulled).
      type: int
      sample: 1
    errmsg:
      description: Why the image failed; empty on success. Never contains credentials.
      type: str
      sample: ""
    digest:
      description: Manifest digest.
      type: str
      sample: sha256:6e5e5edf47af24ef7fa020299c63b5d645d81e1cfbddef12fb7f2d74b1cfe958
    id:
      description: Local image ID after the pull.
      type: str
      sample: sha256:5d6514a34bb9fcd11df14310a90e2b4d08eda246bfad577bccf93030a608fe20
    previous_id:
      description: Local image ID before the pull; empty when it was absent.
      type: str
      sample: ""
    status:
      description: V(pulled), V(up_to_date), V(present), V(would_pull) (check mode) or V(failed).
      type: str
      sample: pulled
failure:
  description: One row per image that failed, same keys as RV(success).
  returned: always
  type: list
  elements: dict
pulled:
  description: References whose local image changed (or, in check mode, would be pulled).
  returned: always
  type: list
  elements: str
  sample: [busybox:latest]
up_to_date:
  description: References that were already current.
  returned: always
  type: list
  elements: str
  sample: [registry.example.com:5000/team/app:2.4.1]
diff:
  description: Local image IDs before and after, by reference.
  returned: always
  type: dict
  sample: {"before": {"busybox:latest": null}, "after": {"busybox:latest": "sha256:5d65..."}}
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bbklab.puller.plugins.module_utils._clients import ApiClient, EngineClient
from ansible_collections.bbklab.puller.plugins.module_utils._daemon import DOCKER_IMPORT_ERROR, HAS_DOCKER
from ansible_collections.bbklab.puller.plugins.module_utils._engine import row_reference
from ansible_collections.bbklab.puller.plugins.module_utils._connection import (
    DEFAULT_DAEMON_TIMEOUT, api_argument_spec, connection_argument_spec, credentials_argument_spec, daemon_tls,
    hide_item_credentials, request_body, runtime_of)
from ansible_collections.bbklab.puller.plugins.module_utils._cri_api import GRPC_IMPORT_ERROR, HAS_GRPC
from ansible_collections.bbklab.puller.plugins.module_utils._cri_proto import PROTOBUF_IMPORT_ERROR
from ansible_collections.bbklab.puller.plugins.module_utils._credentials import HostCredentials
from ansible_collections.bbklab.puller.plugins.module_utils._errors import InvalidRequest, PullerError
from ansible_collections.bbklab.puller.plugins.module_utils._godur import parse_duration
from ansible_collections.bbklab.puller.plugins.module_utils._mirrors import parse_mirror_map
from ansible_collections.bbklab.puller.plugins.module_utils._request import parse_pull_request

CHANGED = ("pulled", "would_pull")
DEFAULT_DEADLINE = "30m"


class ImagePrefetcher:
    """Builds the ``/pull`` request from the module's options, runs it, shapes the result."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.check_mode = module.check_mode

    def request_body(self):
        """The API body, with the module-level auth_config applied to every item lacking one."""
        return dict(request_body(self.params, self.check_mode), pull=self.params["pull"])

    def run(self):
        body = self.request_body()
        # Fail before any pull, naming the option or image.
        parse_pull_request(body, allowed_registries=[p.lower() for p in self.params.get("allow_registries") or []])
        report = self.client.pull(body)
        rows = report["success"] + report["failure"]
        refs = [row_reference(row) for row in rows]
        result = {
            "changed": any(row["status"] in CHANGED for row in rows),
            "success": report["success"],
            "failure": report["failure"],
            "pulled": _unique(ref for ref, row in zip(refs, rows) if row["status"] in CHANGED),
            "up_to_date": _unique(ref for ref, row in zip(refs, rows) if row["status"] in ("up_to_date", "present")),
            "diff": {"before": dict((ref, row["previous_id"] or None) for ref, row in zip(refs, rows)),
                     "after": dict((ref, row["id"] or None) for ref, row in zip(refs, rows))},
        }
        if report["failure"] and not self.params["ignore_failures"]:
            failed = ["%s (%s)" % (row_reference(row), row["errmsg"]) for row in report["failure"]]
            self.module.fail_json(msg="failed to pull %d image(s): %s" % (len(failed), "; ".join(failed)), **result)
        return result


def _unique(items):
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _require_libraries(module, cri_endpoint):
    """Direct mode needs the library of its runtime only: docker, or grpcio and protobuf for the CRI."""
    if cri_endpoint is None:
        if not HAS_DOCKER:
            module.fail_json(msg=missing_required_lib("docker"), exception=str(DOCKER_IMPORT_ERROR))
        return
    if not HAS_GRPC:
        # GRPC_IMPORT_ERROR is protobuf's when grpcio itself was found.
        missing = [name for name, error in (("grpcio", GRPC_IMPORT_ERROR is not PROTOBUF_IMPORT_ERROR),
                                            ("protobuf", PROTOBUF_IMPORT_ERROR is not None)) if error]
        module.fail_json(msg=missing_required_lib(" and ".join(missing), reason="the CRI runtime at %s" % cri_endpoint),
                         exception=str(GRPC_IMPORT_ERROR))


def _host_credentials(params, cri_endpoint):
    """The host's Docker credentials, read with the docker library. A CRI node
    without it has none to give: its containerd applies the credentials of its
    own config (``registry.configs``) to a pull that brings none."""
    if not params["host_credentials"] or (cri_endpoint is not None and not HAS_DOCKER):
        return None
    return HostCredentials()


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(credentials_argument_spec())
    argument_spec.update(api_argument_spec())
    argument_spec.update(
        images=dict(type="list", elements="raw", required=True),
        concurrency=dict(type="int", default=10),
        retry=dict(type="int", default=3),
        deadline=dict(type="str"),
        pull=dict(type="str", choices=["always", "missing"], default="always"),
        mirrors=dict(type="dict"),
        allow_registries=dict(type="list", elements="str", default=[]),
        ignore_failures=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
    )
    hide_item_credentials(module)
    params = module.params
    if params["deadline"] is None:
        if params["timeout"] != DEFAULT_DAEMON_TIMEOUT:
            # A 0.1.0 playbook's timeout was the per-image deadline; today it is
            # the daemon API's, so such a task would silently change meaning.
            module.warn("timeout is the Docker daemon API's timeout since 0.2.0 (%ss here); the per-image "
                        "deadline is the option deadline (default %s), called timeout in 0.1.0. Set deadline "
                        "to silence this." % (params["timeout"], DEFAULT_DEADLINE))
        params["deadline"] = DEFAULT_DEADLINE
    try:
        deadline = parse_duration(params["deadline"])
    except ValueError as exc:
        module.fail_json(msg="deadline: %s" % exc)
    if params["api_url"]:
        count = max(1, len(params["images"]))
        waves = -(-count // max(1, params["concurrency"]))
        client = ApiClient(module, params["api_url"], params["api_token"],
                           wait_timeout=params["wait_timeout"] or deadline * waves + 60,
                           mirrors=params["mirrors"], mirror_auth=params["mirror_auth"])
    else:
        endpoint, docker_host = runtime_of(params)
        _require_libraries(module, endpoint)
        try:
            mirrors = parse_mirror_map(params["mirrors"])
            tls = daemon_tls(params) if endpoint is None else None
            client = EngineClient(docker_host, deadline, max(1, params["concurrency"]), mirrors=mirrors,
                                  mirror_auth=params["mirror_auth"], tls=tls, api_version=params["api_version"],
                                  daemon_timeout=params["timeout"], runtime_endpoint=endpoint,
                                  credentials=_host_credentials(params, endpoint))
        except InvalidRequest as exc:
            module.fail_json(msg="%s: %s" % (exc.field, exc.message))
    try:
        module.exit_json(**ImagePrefetcher(module, client).run())
    except InvalidRequest as exc:
        module.fail_json(msg="%s: %s" % (exc.field or "images", exc.message))
    except PullerError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())


if __name__ == "__main__":
    main()
