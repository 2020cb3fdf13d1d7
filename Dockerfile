# puller: the HTTP API in a small image. Run it as the original was run:
#   docker run -d --name=puller -e LISTEN_ADDR=:9006 -e DOCKER_SOCKET=/var/run/docker.sock \
#       --net=host -v /var/run/docker.sock:/var/run/docker.sock bbklab/puller
ARG BASE=debian:bookworm-slim

# -- build: a wheel of puller and wheels of everything it needs --------------
# (with the extra cri: grpcio and protobuf, for Kubernetes nodes' containerd)
FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY puller /src/puller
COPY plugins/module_utils /src/plugins/module_utils
RUN python3 -m venv /tmp/build-venv \
 && /tmp/build-venv/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels "/src[cri]" \
 && /tmp/build-venv/bin/pip download --no-cache-dir --disable-pip-version-check --no-deps --dest /tools pip

# -- final: python3 and a venv with the wheels; no pip, compilers or caches ---
FROM ${BASE}
# The version is puller/__init__.py's; `make image` passes it.
ARG VERSION
LABEL org.opencontainers.image.title="puller" \
      org.opencontainers.image.description="Pull many container images onto the host's Docker daemon or Kubernetes node's containerd, with retries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="GPL-3.0-or-later" \
      org.opencontainers.image.source="https://github.com/bbklab/puller"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
COPY --from=build /wheels /tmp/wheels
COPY --from=build /tools /tmp/tools
# pip runs from its wheel file, so it is used here but not installed.
RUN python3 -m venv --without-pip /opt/puller \
 && /opt/puller/bin/python3 "$(echo /tmp/tools/pip-*.whl)/pip" install --no-cache-dir --disable-pip-version-check \
      --no-index --find-links /tmp/wheels "puller[cri]" \
 && rm -rf /tmp/wheels /tmp/tools /root/.cache
ENV PATH=/opt/puller/bin:$PATH \
    LISTEN_ADDR=:9006 \
    DOCKER_SOCKET=/var/run/docker.sock \
    PULLER_STATE_DIR=/var/lib/puller \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root by default: the mounted Docker socket is root:docker with a group ID
# that differs per host. See the README to run it as another user.
RUN mkdir -p -m 0700 /var/lib/puller
# The job store: mount a volume here so that jobs survive a new container.
VOLUME /var/lib/puller
EXPOSE 9006
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python3", "-c", "import os,sys,urllib.request as u; p=os.environ.get('LISTEN_ADDR',':9006').rsplit(':',1)[1]; sys.exit(0 if u.urlopen('http://127.0.0.1:%s/ping' % p, timeout=2).read()==b'OK' else 1)"]
# Exec form: SIGTERM from `docker stop` reaches the server, which drains and exits 0.
ENTRYPOINT ["puller", "serve"]
