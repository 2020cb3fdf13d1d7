#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection at <tmp>/ansible_collections/bbklab/puller,
# as the ansible-test GitHub action runs it. Extra arguments go to ansible-test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(bash "$root/scripts/bootstrap.sh")}
bin=$(dirname "$python")
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# ansible-test bootstraps pip in each venv it makes with a get-pip script from
# its CI file host, which these machines cannot reach. This stand-in does the
# same with ensurepip, then installs what ansible-test asked for with the
# caller's environment (ensurepip points PIP_CONFIG_FILE at /dev/null, which
# would drop the machine's pip settings).
pip_version=$("$python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
class Py: version = None
print(get_venv_packages(Py())["pip"])
PY
)
cache=~/.ansible/test/cache
mkdir -p "$cache"
cat >"$cache/get_pip_${pip_version//./_}.py" <<'PY'
import ensurepip
import os
import subprocess
import sys

saved = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=saved))
PY

work=$(mktemp -d /tmp/puller-sanity-XXXXXX)
trap 'rm -rf "$work"' EXIT
dest=$work/ansible_collections/bbklab/puller
mkdir -p "$dest"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | grep -zv '^tests/output/' |
  while IFS= read -r -d '' f; do
    if [ -e "$f" ]; then cp --parents "$f" "$dest/"; fi
  done)
cd "$dest"
PATH="$bin:$PATH" "$bin/ansible-test" sanity --python "$pyver" --requirements --color no "$@"
