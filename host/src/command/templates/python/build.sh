#!/usr/bin/env bash
# Builds {{name}}.wasm, an uploadable component, in the venv setup.sh prepares; the WIT
# contract is the one the helper package ships.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
venv="$(./setup.sh | tail -n 1)"
wit="$("$venv/bin/python" -m projector_plugin.wit)"
# With VIRTUAL_ENV set, componentize-py also looks for modules in the venv's site-packages.
VIRTUAL_ENV="$venv" "$venv/bin/componentize-py" -q -d "$wit" -w projection componentize app -p . -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
