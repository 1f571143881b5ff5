#!/usr/bin/env bash
# Builds the JavaScript projections into WebAssembly components:
#   plugins/js/build.sh OUT_DIR [plugin-dir ...]
# writes OUT_DIR/order_summaries.wasm and OUT_DIR/sku_sales.wasm (against the WIT that the helper
# package, ../../sdk/js, ships).
# Installs the pinned toolchain with `npm ci` first when node_modules is missing or older than
# package.json / package-lock.json (npm's download cache in ~/.npm is reused). Any cwd works.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 OUT_DIR [plugin-dir ...]" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
shift

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool not found; install Node.js 20 or later" >&2
    exit 1
  fi
done
major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$major" -lt 20 ]]; then
  echo "error: Node.js $(node --version) is too old; 20 or later is required" >&2
  exit 1
fi

cd "$here"
stamp=node_modules/.package-lock.json
if [[ ! -f "$stamp" || package-lock.json -nt "$stamp" || package.json -nt "$stamp" ]]; then
  echo "installing the JS toolchain (npm ci) ..." >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

node build.mjs "$out" "$@"
