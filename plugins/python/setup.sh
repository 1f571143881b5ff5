#!/usr/bin/env bash
# Creates (or reuses) the virtualenv holding the Python plugins' build toolchain
# (requirements.txt) at ${PROJECTOR_CACHE_DIR:-$HOME/.cargo/projector-cache}/python-venv.
# Prints the venv path on its last line. Idempotent: a venv already holding the pinned
# requirements is reused without touching the network.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PROJECTOR_CACHE_DIR:-$HOME/.cargo/projector-cache}"
venv="$cache/python-venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/componentize-py" --version >/dev/null 2>&1; then
  echo "setup.sh: reusing $venv" >&2
else
  mkdir -p "$cache"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$stamp"
  echo "setup.sh: installed $(cd "$here" && "$venv/bin/componentize-py" --version) into $venv" >&2
fi
echo "$venv"
