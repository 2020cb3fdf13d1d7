#!/usr/bin/env bash
# Throwaway test ground: a private dockerd, two local registries (one open, one
# behind htpasswd basic auth) and fixture images built FROM scratch and pushed.
#
#   scripts/testenv.sh up   [DIR]   start everything, write DIR/env.sh
#   scripts/testenv.sh down [DIR]   stop everything, remove DIR
#   scripts/testenv.sh dockerd-stop|dockerd-start [DIR]   take the daemon away, bring it back
#   scripts/testenv.sh hosts DIR N   N more daemons (simulated managed hosts); prints sockets
#   scripts/testenv.sh isolated DIR  a daemon whose registry traffic goes nowhere; prints socket
#   scripts/testenv.sh tls DIR       a daemon on loopback TCP with --tlsverify; prints PORT CERTDIR
#   scripts/testenv.sh podman DIR    Podman's Docker-compatible API service; prints its socket
#   scripts/testenv.sh containerd DIR   a private containerd with its CRI plugin (as on a
#                                    Kubernetes node); prints its socket (up starts it too)
#   scripts/testenv.sh containerd-stop|containerd-start [DIR]   take it away, bring it back
#   scripts/testenv.sh fixtures DIR NAME COUNT LAYERS KIB [SHARED_KIB]   build another image set
#
# DIR defaults to $PULLER_TESTENV or /tmp/puller-testenv. Nothing here touches
# the host's own Docker daemon, its images or ~/.docker.
set -euo pipefail

cmd=${1:-}
dir=${2:-${PULLER_TESTENV:-/tmp/puller-testenv}}

# How many distinct fixture images to build (benchmarks want more).
FIXTURE_COUNT=${FIXTURE_COUNT:-24}
FIXTURE_LAYERS=${FIXTURE_LAYERS:-3}
FIXTURE_LAYER_KIB=${FIXTURE_LAYER_KIB:-64}
REGISTRY_USER=puller-test
# A fixed, recognisable password: tests search every log and body for it.
REGISTRY_PASSWORD=${REGISTRY_PASSWORD:-S3cret-Registry-Pa55}

log() { echo "testenv: $*" >&2; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v htpasswd >/dev/null || missing+=(apache2-utils)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timed out waiting for $what"; return 1; fi
    sleep 0.2
  done
}

start_registry() { # start_registry NAME PORT [htpasswd-file]
  local name=$1 port=$2 htpw=${3:-}
  mkdir -p "$dir/$name/data"
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage: {filesystem: {rootdirectory: $dir/$name/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [ -n "$htpw" ]; then
      echo "auth: {htpasswd: {realm: puller-test, path: $htpw}}"
    fi
  } >"$dir/$name/config.yml"
  setsid docker-registry serve "$dir/$name/config.yml" >"$dir/$name/log" 2>&1 &
  echo $! >"$dir/$name/pid"
  wait_for 20 "registry $name" curl -s -o /dev/null "http://127.0.0.1:$port/v2/"
}

start_dockerd() { # start_dockerd [SUBDIR]: a daemon with everything under $dir/SUBDIR
  local d=$dir/${1:-docker}
  mkdir -p "$d"
  setsid dockerd --data-root "$d/data" --exec-root "$d/exec" \
    -H "unix://$d/docker.sock" --pidfile "$d/docker.pid" \
    --iptables=false --bridge=none --log-level=warn >>"$d/log" 2>&1 &
  wait_for 60 "dockerd in $d" docker -H "unix://$d/docker.sock" version
}

start_isolated() {
  # A daemon whose registry traffic all goes to a dead proxy on loopback:
  # for tests that send it arbitrary generated references, none of which may
  # reach a real address. (Go never proxies localhost, which stays local.)
  [ -S "$dir/isolated/docker.sock" ] && { echo "$dir/isolated/docker.sock"; return; }
  HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY='' start_dockerd isolated
  echo "$dir/isolated/docker.sock"
}

start_tls() {
  # A daemon on a loopback TCP port with --tlsverify: a CA, server and client
  # certificates made by openssl (in DIR/tls), as a remote daemon is set up.
  # Prints "PORT CERTDIR"; CERTDIR has ca.pem, cert.pem and key.pem (the
  # client's, as DOCKER_CERT_PATH expects) and another-ca.pem (a wrong CA).
  local d=$dir/tls port
  if [ -f "$d/port" ]; then echo "$(cat "$d/port") $d"; return; fi
  mkdir -p "$d" && cd "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=puller-test-daemon-ca 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -keyout another-ca-key.pem -out another-ca.pem -days 2 -subj /CN=another-ca 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 2>/dev/null
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server-cert.pem -days 2 -extfile server.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=puller-client 2>/dev/null
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile client.ext 2>/dev/null
  cd - >/dev/null
  port=$(free_port)
  setsid dockerd --data-root "$d/data" --exec-root "$d/exec" -H "tcp://127.0.0.1:$port" \
    --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/server-cert.pem" --tlskey "$d/server-key.pem" \
    --pidfile "$d/docker.pid" --iptables=false --bridge=none --log-level=warn >>"$d/log" 2>&1 &
  wait_for 60 "TLS dockerd" docker -H "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$d/ca.pem" \
    --tlscert "$d/cert.pem" --tlskey "$d/key.pem" version
  echo "$port" >"$d/port"
  echo "$port $d"
}

start_podman() {
  # Podman's Docker-compatible API as a second kind of daemon (rootful, vfs
  # storage, all under DIR/podman); loopback registries are insecure there.
  # Prints the socket path.
  local d=$dir/podman
  if [ -S "$d/podman.sock" ]; then echo "$d/podman.sock"; return; fi
  command -v podman >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman >/dev/null; }
  mkdir -p "$d"
  printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "localhost"\ninsecure = true\n' >"$d/registries.conf"
  CONTAINERS_REGISTRIES_CONF=$d/registries.conf setsid podman --root "$d/root" --runroot "$d/run" \
    --storage-driver vfs system service --time=0 "unix://$d/podman.sock" >>"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_for 60 "podman service" curl -sf --unix-socket "$d/podman.sock" http://d/_ping
  echo "$d/podman.sock"
}

cri_env() { # the env.sh lines of the private containerd
  local d=$dir/containerd
  cat <<EOF
export PULLER_TEST_CRI_SOCKET=$d/containerd.sock
export PULLER_TEST_CRI_ENDPOINT=unix://$d/containerd.sock
export PULLER_TEST_CRI_NAMESPACE=k8s.io
export PULLER_TEST_CRI_CERTS_D=$d/certs.d
export PULLER_TEST_CONTAINERD_LOG=$d/log
export PULLER_TEST_CTR=$(command -v ctr)
EOF
}

start_containerd() {
  # A second, private containerd with its CRI plugin on, the image service a
  # kubelet drives: Debian's own config turns the CRI plugin off, so this one
  # gets a config of its own with every path, socket and port under DIR (none
  # collides with the host's containerd or the test dockerd's). Registries
  # are resolved through the hosts.toml files under certs.d (one directory per
  # registry host); loopback registries are plain HTTP to containerd without
  # one. With no CNI config the CRI plugin logs one error at start, and its
  # image service works. Prints the socket path.
  local d=$dir/containerd port
  command -v containerd >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd >/dev/null; }
  mkdir -p "$d/certs.d" "$d/cni" "$d/opt"
  if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then
    wait_for 30 "containerd in $d" ctr --address "$d/containerd.sock" version
    echo "$d/containerd.sock"; return
  fi
  if [ -f "$d/port" ]; then port=$(cat "$d/port"); else port=$(free_port); echo "$port" >"$d/port"; fi
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
  level = "info"
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "$port"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$d/cni"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$d/certs.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$d/opt"
EOF
  # A socket left by a daemon killed hard would make the wait below succeed
  # too early, or the new daemon fail to listen.
  rm -f "$d/containerd.sock" "$d/containerd.sock.ttrpc" "$d/debug.sock"
  setsid containerd --config "$d/config.toml" >>"$d/log" 2>&1 &
  echo $! >"$d/pid"
  wait_for 60 "containerd in $d" ctr --address "$d/containerd.sock" version
  # containerd serves only once every plugin is loaded: the CRI plugin's
  # status is final by now, and must be "ok".
  if ! ctr --address "$d/containerd.sock" plugins ls id==cri | grep -q ' ok *$'; then
    log "the CRI plugin of containerd in $d did not start (see $d/log)"; return 1
  fi
  if [ -f "$dir/env.sh" ] && ! grep -q PULLER_TEST_CRI_SOCKET "$dir/env.sh"; then
    cri_env >>"$dir/env.sh" # a test ground started before this daemon existed
  fi
  echo "$d/containerd.sock"
}

start_hosts() { # start_hosts N: N more daemons, one per simulated managed host
  local k
  for k in $(seq 1 "$1"); do
    [ -S "$dir/host$k/docker.sock" ] && continue
    start_dockerd "host$k" &
  done
  wait
  for k in $(seq 1 "$1"); do echo "$dir/host$k/docker.sock"; done
}

build_set() { # build_set NAME COUNT LAYERS LAYER_KIB [SHARED_BASE_KIB]
  # Pushes localhost:OPEN_PORT/NAME/img-01..COUNT, each FROM scratch with
  # LAYERS random files; with SHARED_BASE_KIB, one more layer common to all.
  local name=$1 count=$2 layers=$3 kib=$4 shared=${5:-0}
  local sock="unix://$dir/docker/docker.sock" ctx="$dir/build-$name" n i l
  export DOCKER_BUILDKIT=0
  mkdir -p "$ctx"
  if [ "$shared" -gt 0 ]; then head -c "$((shared * 1024))" /dev/urandom >"$ctx/base.bin"; fi
  for n in $(seq 1 "$count"); do
    i=$(printf %02d "$n")
    echo "FROM scratch" >"$ctx/Dockerfile"
    if [ "$shared" -gt 0 ]; then echo "COPY base.bin /base.bin" >>"$ctx/Dockerfile"; fi
    for l in $(seq 1 "$layers"); do
      head -c "$((kib * 1024))" /dev/urandom >"$ctx/layer$l.bin"
      echo "COPY layer$l.bin /layer$l.bin" >>"$ctx/Dockerfile"
    done
    echo "LABEL org.opencontainers.image.title=$name-$i" >>"$ctx/Dockerfile"
    docker -H "$sock" build -q 2>/dev/null -t "localhost:$OPEN_PORT/$name/img-$i:latest" "$ctx" >/dev/null
    docker -H "$sock" push "localhost:$OPEN_PORT/$name/img-$i:latest" >/dev/null
  done
  # Leave the daemon's image store empty: tests decide what is present.
  docker -H "$sock" image ls -q | sort -u | xargs -r docker -H "$sock" rmi -f >/dev/null
  rm -rf "$ctx"
}

build_fixtures() {
  local sock="unix://$dir/docker/docker.sock" n i
  build_set fixture "$FIXTURE_COUNT" "$FIXTURE_LAYERS" "$FIXTURE_LAYER_KIB"
  export DOCKER_CONFIG="$dir/docker-config"
  mkdir -p "$DOCKER_CONFIG"
  echo "$REGISTRY_PASSWORD" | docker -H "$sock" login -u "$REGISTRY_USER" --password-stdin \
    "localhost:$AUTH_PORT" >/dev/null 2>&1
  for n in 1 2; do
    i=$(printf %02d "$n")
    docker -H "$sock" pull -q "localhost:$OPEN_PORT/fixture/img-$i:latest" >/dev/null
    docker -H "$sock" tag "localhost:$OPEN_PORT/fixture/img-$i:latest" "localhost:$AUTH_PORT/private/img-$i:latest"
    docker -H "$sock" push "localhost:$AUTH_PORT/private/img-$i:latest" >/dev/null
  done
  docker -H "$sock" logout "localhost:$AUTH_PORT" >/dev/null 2>&1 || true
  docker -H "$sock" image ls -q | sort -u | xargs -r docker -H "$sock" rmi -f >/dev/null
}

up() {
  if [ -f "$dir/env.sh" ]; then log "already up in $dir"; cat "$dir/env.sh"; return; fi
  install_packages
  mkdir -p "$dir"
  OPEN_PORT=$(free_port); AUTH_PORT=$(free_port)
  while [ "$AUTH_PORT" = "$OPEN_PORT" ]; do AUTH_PORT=$(free_port); done
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASSWORD" >"$dir/htpasswd"
  start_dockerd
  start_registry registry-open "$OPEN_PORT"
  start_registry registry-auth "$AUTH_PORT" "$dir/htpasswd"
  start_containerd >/dev/null &
  local t0=$SECONDS cri_pid=$!
  build_fixtures
  wait "$cri_pid"
  log "built and pushed $FIXTURE_COUNT fixture images in $((SECONDS - t0))s"
  cat >"$dir/env.sh.tmp" <<EOF
export PULLER_TESTENV=$dir
export PULLER_TEST_DOCKER_SOCKET=$dir/docker/docker.sock
export PULLER_TEST_DOCKERD_LOG=$dir/docker/log
export PULLER_TEST_REGISTRY=localhost:$OPEN_PORT
export PULLER_TEST_REGISTRY_PORT=$OPEN_PORT
export PULLER_TEST_AUTH_REGISTRY=localhost:$AUTH_PORT
export PULLER_TEST_AUTH_REGISTRY_PORT=$AUTH_PORT
export PULLER_TEST_REGISTRY_USER=$REGISTRY_USER
export PULLER_TEST_REGISTRY_PASSWORD=$REGISTRY_PASSWORD
export PULLER_TEST_FIXTURE_COUNT=$FIXTURE_COUNT
EOF
  cri_env >>"$dir/env.sh.tmp"
  mv "$dir/env.sh.tmp" "$dir/env.sh"
  cat "$dir/env.sh"
}

kill_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

down() {
  [ -d "$dir" ] || return 0
  kill_pidfile "$dir/registry-open/pid"
  kill_pidfile "$dir/registry-auth/pid"
  kill_pidfile "$dir/podman/pid"
  kill_pidfile "$dir/containerd/pid"
  local pidfile
  for pidfile in "$dir"/*/docker.pid; do kill_pidfile "$pidfile"; done
  # dockerd leaves its own containerd behind when it is killed hard.
  pkill -f "containerd --config $dir/" 2>/dev/null || true
  if mountpoint -q "$dir/docker/data/overlay2" 2>/dev/null; then umount -l "$dir/docker/data/overlay2" || true; fi
  grep " $dir/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  # Used by the tests that take the daemon away and bring it back.
  dockerd-stop) kill_pidfile "$dir/docker/docker.pid" ;;
  dockerd-start) start_dockerd ;;
  # Ansible tests: more daemons, one per simulated host; prints their sockets.
  hosts) start_hosts "${3:-3}" ;;
  isolated) start_isolated ;;
  # Hosts tests: a daemon behind TLS on a loopback TCP port; prints PORT CERTDIR.
  tls) start_tls ;;
  # Hosts tests: Podman's Docker-compatible API; prints the socket.
  podman) start_podman ;;
  # CRI tests: the private containerd (up starts it; this starts it in a test
  # ground made before it existed, and adds its lines to env.sh).
  containerd) start_containerd ;;
  containerd-stop) kill_pidfile "$dir/containerd/pid" ;;
  containerd-start) start_containerd ;;
  # Benchmarks: another set of images, e.g. `fixtures DIR many-small 60 2 256`.
  fixtures)
    # shellcheck disable=SC1091
    source "$dir/env.sh"; OPEN_PORT=$PULLER_TEST_REGISTRY_PORT
    build_set "$3" "$4" "$5" "$6" "${7:-0}" ;;
  *) echo "usage: $0 up|down|dockerd-stop|dockerd-start|containerd|containerd-stop|containerd-start|fixtures [DIR ...]" >&2; exit 2 ;;
esac
