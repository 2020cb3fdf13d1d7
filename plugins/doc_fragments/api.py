# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""API mode of the modules: a running ``puller serve`` does the work as a job."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of a running C(puller serve), for example V(http://127.0.0.1:9006). Selects API mode.
    type: str
  api_token:
    description: Bearer token of that server.
    type: str
  wait_timeout:
    description:
      - In API mode, how many seconds to wait for the job on the server to end. The request is made as a job
        (C(POST /jobs)) that the module polls, so a long run does not depend on one HTTP request surviving
        proxies and idle timeouts.
      - When it runs out the task fails naming the job, which goes on on the server.
      - Defaults to the O(deadline) times the number of rounds of O(concurrency) images, plus a minute.
    type: int
  api_validate_certs:
    description:
      - Verify the puller server's TLS certificate in API mode.
      - Called C(validate_certs) in 0.1.0 of M(bbklab.puller.prefetch). Since 0.2.0 C(validate_certs) is TLS to
        the Docker daemon there, as in community.docker.
    type: bool
    default: true
    version_added: 0.2.0
"""
