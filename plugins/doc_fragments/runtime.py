# -*- coding: utf-8 -*-
# Copyright (c) puller developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which runtime a module pulls through: the Docker API or a Kubernetes node's CRI runtime."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  runtime:
    description:
      - The runtime to pull through in direct mode.
      - V(docker) is the Docker API at O(docker_host) (dockerd, or Podman's Docker-compatible service).
      - V(cri) is the Kubernetes CRI image service at O(runtime_endpoint), the one the kubelet uses (containerd on
        a kubespray or kubeadm node). Images land in its C(k8s.io) namespace, where C(crictl images) shows them.
      - V(auto) asks what answers. With O(runtime_endpoint) (or E(CONTAINER_RUNTIME_ENDPOINT) on the managed
        host) it is V(docker) at that socket when it speaks the Docker API (a Podman socket named there, say), else
        V(cri). Without it, it is V(docker) at O(docker_host) when the daemon answers there; else, if O(docker_host)
        is the default and nothing answers, V(cri) at V(unix:///run/containerd/containerd.sock) when containerd
        answers there (a kubespray node without Docker); else V(docker), whose error says what is missing.
      - In API mode the server's own runtime is used and this option is ignored.
    type: str
    choices: [auto, docker, cri]
    default: auto
    version_added: 0.3.0
  runtime_endpoint:
    description:
      - The CRI runtime's socket, as crictl names it, for example V(unix:///run/containerd/containerd.sock) (also
        what V(runtime=cri) uses when this is not given). A path is taken as a Unix socket.
      - If not given, the environment variable E(CONTAINER_RUNTIME_ENDPOINT).
      - With the CRI, the Docker daemon options (O(docker_host), TLS, O(api_version)) are not used; O(timeout)
        bounds each call to the runtime but pulls. O(mirrors) cannot be used either, as containerd applies the
        mirrors of its C(hosts.toml) files itself, under the origin's name (write them with the role
        C(bbklab.puller.cri_mirrors)). An image's C(platform) may only be the node's own.
    type: str
    version_added: 0.3.0
notes:
  - With the CRI runtime, direct mode needs the Python libraries C(grpcio) and C(protobuf) on the managed host, and
    not the C(docker) library. Progress of each layer comes from containerd's downloads, in steps of about 1 MiB.
"""
