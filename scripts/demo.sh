#!/usr/bin/env bash
# The main job, end to end, on an embedded default: a local registry with
# sample images, a Docker daemon (the host's if it answers, else a throwaway
# one), `puller serve`, and one /pull whose answer is printed. Cleans up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=$(bash scripts/bootstrap.sh)
env_dir=$(mktemp -d /tmp/puller-demo-XXXXXX) && rmdir "$env_dir"
server_pid=
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  bash scripts/testenv.sh down "$env_dir"
}
trap cleanup EXIT
FIXTURE_COUNT=${FIXTURE_COUNT:-6} bash scripts/testenv.sh up "$env_dir" >/dev/null
# shellcheck disable=SC1091
source "$env_dir/env.sh"

socket=$PULLER_TEST_DOCKER_SOCKET
if curl -sf --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1; then
  socket=/var/run/docker.sock
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$python" -m puller serve --listen "127.0.0.1:$port" --docker-socket "$socket" --state-dir "$env_dir/state" \
  >"$env_dir/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null && break; sleep 0.1; done

body=$(cat <<JSON
{"concurrency": 4, "retry": 3, "images": [
  {"image": "$PULLER_TEST_REGISTRY/fixture/img-01", "tag": "latest", "project": "p1"},
  {"image": "$PULLER_TEST_REGISTRY/fixture/img-02", "tag": "latest", "project": "p1"},
  {"image": "$PULLER_TEST_REGISTRY/fixture/img-03", "tag": "latest", "project": "p2"},
  {"image": "$PULLER_TEST_AUTH_REGISTRY/private/img-01", "tag": "latest", "project": "p3",
   "auth_config": {"username": "$PULLER_TEST_REGISTRY_USER", "password": "$PULLER_TEST_REGISTRY_PASSWORD"}},
  {"image": "$PULLER_TEST_REGISTRY/fixture/no-such-image", "tag": "latest", "project": "p4"}]}
JSON
)
echo "== puller serve on 127.0.0.1:$port, Docker daemon at $socket"
echo "== POST /pull (5 images; the last one does not exist)"
curl -s -o "$env_dir/out.json" -w '%{http_code}' -X POST "http://127.0.0.1:$port/pull" -d "$body" >"$env_dir/code"
echo "== HTTP $(cat "$env_dir/code")"
"$python" -m json.tool "$env_dir/out.json"
echo "== GET /jobs (every pull is a job; the status page is at http://127.0.0.1:$port/)"
curl -s "http://127.0.0.1:$port/jobs" | "$python" -m json.tool
echo "== server log"
cat "$env_dir/server.log"
