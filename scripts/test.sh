#!/usr/bin/env bash
# Install everything and run every test: unit and integration tests (pytest,
# against a throwaway dockerd, registries and three simulated Ansible hosts),
# then ansible-test sanity on the collection. This is what .ci/run runs.
# Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=$(bash scripts/bootstrap.sh)

export PULLER_TESTENV=${PULLER_TESTENV_DIR:-$(mktemp -d /tmp/puller-ci-XXXXXX)}
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  # Keep what the tests made for people to look at (the status page's screenshots).
  if [ -d "$PULLER_TESTENV/artifacts" ]; then rm -rf test-artifacts && cp -r "$PULLER_TESTENV/artifacts" test-artifacts; fi
  bash scripts/testenv.sh down "$PULLER_TESTENV"
}
trap cleanup EXIT
rmdir "$PULLER_TESTENV" 2>/dev/null || true
bash scripts/testenv.sh up "$PULLER_TESTENV" >/dev/null

status=0
"$python" -m pytest -p no:cacheprovider "$@" || status=$?
if [ -f "$PULLER_TESTENV/report.txt" ]; then echo "== measured"; cat "$PULLER_TESTENV/report.txt"; fi
echo "== ansible-test sanity"
PYTHON=$python bash scripts/sanity.sh >"$PULLER_TESTENV/sanity.log" 2>&1 || {
  status=1
  grep -E '^(ERROR|FATAL)' "$PULLER_TESTENV/sanity.log" || tail -40 "$PULLER_TESTENV/sanity.log"
}
[ $status -ne 0 ] || echo "ansible-test sanity: $(grep -c '^Running sanity test' "$PULLER_TESTENV/sanity.log") tests passed"
exit $status
