#!/usr/bin/env bash
# Creates or updates the venv this project is tested and built in: .venv, or
# $PROJECTOR_PYTHON_VENV (a venv several projects share). Installs the pinned toolchain
# (requirements.txt) and Projector's helper package from its path, each again only when it
# changed since it was installed there, so a fix in the helper reaches this project with the
# next build. Prints the venv's path on its last line.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# The helper package `projector-plugin`: sdk/python of the Projector checkout this project was
# made from. Installed as a copy (componentize-py does not follow editable installs).
helper={{python_helper}}
venv="${PROJECTOR_PYTHON_VENV:-.venv}"
pip() { "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@"; }

[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
if ! cmp -s requirements.txt "$venv/.requirements.installed"; then
  echo "setup.sh: installing requirements.txt into $venv" >&2
  pip install -r requirements.txt
  cp requirements.txt "$venv/.requirements.installed"
fi
stamp="$venv/.projector-plugin.installed"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$helper" ]] \
    || [[ -n "$(find "$helper" -newer "$stamp" -not -path '*/__pycache__*' -print -quit)" ]]; then
  echo "setup.sh: installing projector-plugin from $helper into $venv" >&2
  pip install --no-deps --force-reinstall "$helper"
  echo "$helper" > "$stamp"
fi
cd "$venv" && pwd
