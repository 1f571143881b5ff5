#!/usr/bin/env bash
# The long soak: SIGKILLs the host at 1,000 random moments while events keep arriving, restarts
# its PostgreSQL server under it every 100 kills, and checks the read models equal the model and
# a clean run (the crash test of tests/all/crash.rs, which CI runs with 20 kills).
#
#   scripts/soak.sh                  # 1,000 kills
#   KILLS=100 scripts/soak.sh        # fewer; ORDERS=... (default 725 per kill), SEED=... (default fixed)
#
# Services run on their own ports in a throwaway directory and are stopped at the end, like
# scripts/test.sh; the test starts and restarts a PostgreSQL cluster of its own besides. The
# output is kept in $PROJECTOR_STATE_DIR/soak.log (printed path) and ends with the summary.
set -euo pipefail
cd "$(dirname "$0")/.."

export PROJECTOR_STATE_DIR=${PROJECTOR_SOAK_STATE_DIR:-$(mktemp -d /tmp/projector-soak.XXXXXX)}
export PROJECTOR_PG_PORT=${PROJECTOR_SOAK_PG_PORT:-55452}
export PROJECTOR_KAFKA_PORT=${PROJECTOR_SOAK_KAFKA_PORT:-19392}
# shellcheck source=services.sh
source scripts/services.sh

# Stops the services and keeps the soak's exit status; the services' data goes unless
# PROJECTOR_SOAK_STATE_DIR was given, the log stays.
cleanup() {
  local status=$?
  stop_kafka
  stop_postgres
  if [ -z "${PROJECTOR_SOAK_STATE_DIR:-}" ]; then rm -rf "${PROJECTOR_STATE_DIR:?}/pg" "$PROJECTOR_STATE_DIR/kafka"; fi
  exit "$status"
}
trap cleanup EXIT

start_all
export PROJECTOR_TEST_PG=postgres://postgres@127.0.0.1:$PROJECTOR_PG_PORT/postgres
export PROJECTOR_TEST_BROKERS=127.0.0.1:$PROJECTOR_KAFKA_PORT
export PROJECTOR_SOAK_KILLS=${KILLS:-1000}
[ -n "${ORDERS:-}" ] && export PROJECTOR_SOAK_ORDERS=$ORDERS
[ -n "${SEED:-}" ] && export PROJECTOR_SOAK_SEED=$SEED

log "Building the host"
cargo build --release --locked -p projector-host

log "Soak: $PROJECTOR_SOAK_KILLS kills (log: $PROJECTOR_STATE_DIR/soak.log)"
started=$SECONDS
status=0
cargo test --release --locked -p projector-tests --test all -- --test-threads 1 --nocapture --exact \
  crash::sigkills_and_postgres_restarts_lose_and_double_nothing 2>&1 | tee "$PROJECTOR_STATE_DIR/soak.log" || status=$?
log "Soak finished in $((SECONDS - started)) s with status $status (log: $PROJECTOR_STATE_DIR/soak.log)"
grep -h '^soak summary' "$PROJECTOR_STATE_DIR/soak.log" >&2 || echo "no summary: the soak failed before the end" >&2
exit "$status"
