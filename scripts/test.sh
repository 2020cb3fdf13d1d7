#!/usr/bin/env bash
# Install everything and run every test against a throwaway dockerd and
# registries. This is what .ci/run runs. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python=$(bash scripts/bootstrap.sh)

export PULLER_TESTENV=${PULLER_TESTENV_DIR:-$(mktemp -d /tmp/puller-ci-XXXXXX)}
cleanup() { bash scripts/testenv.sh down "$PULLER_TESTENV"; }
trap cleanup EXIT
rmdir "$PULLER_TESTENV" 2>/dev/null || true
bash scripts/testenv.sh up "$PULLER_TESTENV" >/dev/null

"$python" -m pytest -p no:cacheprovider "$@"
