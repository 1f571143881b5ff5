#!/usr/bin/env bash
# Builds the Python projection plugins into WebAssembly components:
#   build.sh OUT_DIR   ->   OUT_DIR/order_summaries.wasm, OUT_DIR/customer_ltv.wasm, OUT_DIR/sleeper.wasm
# The toolchain (componentize-py, pinned in requirements.txt) lives in the cache venv that
# setup.sh creates or reuses; the helper package is the checkout's sdk/python, taken from its
# source (with the WIT it bundles) rather than installed. Works from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
helper="$(cd "$here/../../sdk/python/src" && pwd)/projector_plugin"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"

venv="$("$here/setup.sh" | tail -n 1)"
componentize="$venv/bin/componentize-py"
if [[ ! -x "$componentize" ]]; then
  echo "build.sh: $componentize is missing; run $here/setup.sh" >&2
  exit 1
fi

# Each plugin is an `app` module in its own directory, next to the shared modules (the helper
# package and order_events.py). Build from a staging copy: componentize-py leaves __pycache__
# directories behind.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -r "$helper" "$stage/"
cp "$here/order_events.py" "$stage/"
wit="$stage/projector_plugin/wit"

for plugin in order_summaries customer_ltv sleeper; do
  start=$SECONDS
  echo "build.sh: building $out/$plugin.wasm" >&2
  mkdir -p "$stage/$plugin"
  cp "$here/$plugin/app.py" "$stage/$plugin/"
  if ! "$componentize" -q -d "$wit" -w projection componentize app \
      -p "$stage/$plugin" -p "$stage" -o "$out/$plugin.wasm"; then
    echo "build.sh: componentize-py failed for $plugin" >&2
    exit 1
  fi
  echo "build.sh: built $out/$plugin.wasm ($(stat -c %s "$out/$plugin.wasm") bytes, $((SECONDS - start)) s)" >&2
done
