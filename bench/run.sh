#!/usr/bin/env bash
# Run the benchmarks and print their tables (not part of the test suite).
#   bench/run.sh            # engine/server presets and the Ansible comparison
#   bench/run.sh pull       # bench.py only:  puller /pull vs xargs -P, docker-py threads, serial
#   bench/run.sh ansible    # ansible_bench.py only: prefetch vs community.docker loop vs xargs -P
#   bench/run.sh server     # server_bench.py only: latency under load, RSS, 50 identical requests
#   bench/run.sh jobs       # jobs_bench.py only: watchers' overhead, 5 jobs at once, SQLite's share, what grows
#                           # with a job's size (add --baseline DIR: side by side with the tree in DIR)
#   bench/run.sh fleet      # fleet_bench.py only: N hosts direct vs through a mirror, over the slow link
#   bench/run.sh cri        # cri_bench.py only: 60 images into containerd: puller vs PullImage threads vs serial ctr
# Then bench/report.py writes the tables into README.md and draws bench/chart.png.
# community.docker comes with the `ansible` package, installed only into the
# benchmark's own venv (.venv-bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh >/dev/null
venv=${PULLER_BENCH_VENV:-$root/.venv-bench}
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check ansible docker requests matplotlib
fi
"$venv/bin/pip" install -q --disable-pip-version-check -e "${root}[cri]"
what=${1:-all}
shift || true
export PULLER_TESTENV=${PULLER_TESTENV:-$(mktemp -u /tmp/puller-bench-XXXXXX)}
own=0
if [ ! -f "$PULLER_TESTENV/env.sh" ]; then
  own=1
  FIXTURE_COUNT=24 bash scripts/testenv.sh up "$PULLER_TESTENV" >/dev/null
fi
# shellcheck disable=SC2317  # called by the trap
cleanup() { if [ $own = 1 ]; then bash scripts/testenv.sh down "$PULLER_TESTENV"; fi; }
trap cleanup EXIT
mkdir -p bench/results
if [ "$what" = all ] || [ "$what" = pull ]; then
  "$venv/bin/python" bench/bench.py --json bench/results/pull.json "$@"
fi
if [ "$what" = all ] || [ "$what" = ansible ]; then
  "$venv/bin/python" bench/ansible_bench.py --json bench/results/ansible.json "$@"
fi
if [ "$what" = all ] || [ "$what" = server ]; then
  "$venv/bin/python" bench/server_bench.py --json bench/results/server.json
fi
if [ "$what" = all ] || [ "$what" = jobs ]; then
  "$venv/bin/python" bench/jobs_bench.py --json bench/results/jobs.json "$@"
fi
if [ "$what" = all ] || [ "$what" = fleet ]; then
  "$venv/bin/python" bench/fleet_bench.py --json bench/results/fleet.json
fi
if [ "$what" = all ] || [ "$what" = cri ]; then
  "$venv/bin/python" bench/cri_bench.py --json bench/results/cri.json "$@"
fi
# The README's section is written from every table, so only a full run rewrites it.
if [ "$what" = all ]; then "$venv/bin/python" bench/report.py; fi
