#!/usr/bin/env bash
# Sets up everything and runs every test: unit tests, SDK and plugin tests, and the end-to-end
# tests against a real PostgreSQL, a real Apache Kafka broker, a real search engine (OpenSearch,
# or the Elasticsearch cluster at $ES_URL) and real plugin components.
# Test services run on their own ports in a throwaway directory and are stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

export PROJECTOR_STATE_DIR=${PROJECTOR_TEST_STATE_DIR:-$(mktemp -d /tmp/projector-test.XXXXXX)}
export PROJECTOR_PG_PORT=${PROJECTOR_TEST_PG_PORT:-55442}
export PROJECTOR_KAFKA_PORT=${PROJECTOR_TEST_KAFKA_PORT:-19192}
export PROJECTOR_OPENSEARCH_PORT=${PROJECTOR_TEST_OPENSEARCH_PORT:-19290}
# shellcheck source=services.sh
source scripts/services.sh

cleanup() {
  if [ -z "${ES_URL:-}" ]; then stop_opensearch; fi
  stop_kafka
  stop_postgres
  if [ -z "${PROJECTOR_TEST_STATE_DIR:-}" ]; then rm -rf "$PROJECTOR_STATE_DIR"; fi
}
trap cleanup EXIT

start_all
# With ES_URL set, the search-engine tests run against that Elasticsearch cluster instead.
if [ -z "${ES_URL:-}" ]; then start_search; fi
export PROJECTOR_TEST_PG=postgres://postgres@127.0.0.1:$PROJECTOR_PG_PORT/postgres
export PROJECTOR_TEST_BROKERS=127.0.0.1:$PROJECTOR_KAFKA_PORT
# Tests that kill, freeze and restart a broker start their own through scripts/kafka.sh.

log "Formatting (cargo fmt --check, rustfmt.toml)"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)

log "Building the host"
cargo build --release --locked -p projector-host

log "Lints (cargo clippy -D warnings: workspace and plugins)"
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo clippy --workspace --all-targets --release --locked -- -D warnings
(cd plugins && cargo clippy --all-targets --release --locked --target "$(rustc -vV | sed -n 's/^host: //p')" \
   --target-dir "$CACHE/plugins-native-target" -- -D warnings)

log "Unit tests (host, SDK)"
cargo test --release --locked --workspace --exclude projector-tests

log "Plugin tests (native, through the SDK harness)"
(cd plugins && cargo test --release --locked --target "$(rustc -vV | sed -n 's/^host: //p')" \
   --target-dir "$CACHE/plugins-native-target")

log "Python helper package and plugin tests (native, standard library unittest)"
(cd sdk/python && PYTHONPATH=src PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests)
(cd plugins/python && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s tests)

log "JavaScript helper package and plugin tests (native, node --test)"
(cd sdk/js && npm ci --no-audit --no-fund --loglevel=error && node --test)
(cd plugins/js && node --test)

log "End-to-end tests (real PostgreSQL, Apache Kafka and plugin components)"
cargo test --release --locked -p projector-tests -- --test-threads "${PROJECTOR_TEST_THREADS:-2}"
log "All tests passed"
