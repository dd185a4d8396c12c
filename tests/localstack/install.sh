#!/usr/bin/env bash
# Makes the Python 3.13 virtualenv that runs LocalStack in host mode (no Docker): the pinned
# localstack-core of requirements.txt beside this script, plus kinesis-mock (from the npm registry). LocalStack 4.x needs Python >= 3.13 for
# its S3, Kinesis and Step Functions providers (on 3.12 they answer 500). The venv lives in a
# cache outside the work tree, keyed by the inputs' hash; prints its directory.
#
# Python 3.13 comes from $IC_PYTHON313, else python3.13 on PATH, else pyenv's newest 3.13.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${IC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/incident-commander}"

find_python() {
  if [[ -n "${IC_PYTHON313:-}" ]]; then echo "$IC_PYTHON313"; return; fi
  local candidate candidates=()
  candidates+=("$(command -v python3.13 2>/dev/null || true)")
  mapfile -t -O 1 candidates < <(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13.*/bin/python3.13 | sort -V -r)
  for candidate in "${candidates[@]}"; do
    # pyenv's shim exists even when no 3.13 is installed: ask the interpreter itself.
    if [[ -n "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
  echo "Python 3.13 not found (set IC_PYTHON313, or: pyenv install 3.13)" >&2
  exit 1
}

python="$(find_python)"
python_version="$("$python" -c 'import sys; print(sys.version.split()[0])')"
key="$(cat "$here/requirements.txt" "$here/install.sh" <(echo "$python_version") | sha256sum | cut -c1-16)"
venv="$cache_root/localstack-$key"

if [[ -f "$venv/.complete" ]]; then
  echo "$venv"
  exit 0
fi

started=$(date +%s)
echo "installing LocalStack into $venv (one time; about a minute)" >&2
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --upgrade 'pip>=25.3' >&2
# localstack-core pins only a few of its dependencies; newer releases of the others break it
# (cbor2 6 moved cbor2._decoder, pyOpenSSL 25 dropped X509.add_extensions). Resolve against the
# index as it was when the pinned release came out: the same set LocalStack was tested with.
"$venv/bin/python" -m pip install --quiet --uploaded-prior-to "$(sed -n 's/^# uploaded-prior-to: //p' "$here/requirements.txt")" \
  -r "$here/requirements.txt" >&2
"$venv/bin/python" -c 'import localstack.version as v; print("localstack", v.__version__)' >&2
# Kinesis is served by kinesis-mock, which LocalStack installs with npm on first use. Install it
# once here, through LocalStack's own package manager, as a "static lib" (what LocalStack's image
# bakes in); each test's FILESYSTEM_ROOT links to it (tests/support/localstack.py).
OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$venv/static" \
  "$venv/bin/python" -m localstack.cli.lpm install --target static_libs kinesis-mock >&2
test -d "$venv/static/usr/lib/localstack/kinesis-local"
touch "$venv/.complete"
echo "LocalStack installed in $(( $(date +%s) - started ))s" >&2
echo "$venv"
