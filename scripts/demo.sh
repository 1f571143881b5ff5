#!/usr/bin/env bash
# Sets up everything and runs the demo: PostgreSQL and Apache Kafka, the host and the three example
# plugins built from source, $ORDERS realistic orders published (default 10,000), the host run
# until it has caught up, then the throughput and a few rows of each read model printed.
# Services keep running afterwards (scripts/services.sh stop); the host is stopped.
#
# SEARCH_ENGINE=opensearch scripts/demo.sh also starts the OpenSearch node and puts the
# order_search collection on it (elasticsearch.collections): the search endpoint then answers
# from the search engine. A deployment keeps the sinks it was created with, so on a state
# directory where order-search was already built in PostgreSQL, rebuild it
# (`projector projections rebuild order-search`) or start from an empty .projector/.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-10000}
# shellcheck source=services.sh
source scripts/services.sh
start_all
case "${SEARCH_ENGINE:-}" in
  "") ;;
  opensearch)
    start_search
    export PROJECTOR_ELASTICSEARCH__URLS="[\"$PROJECTOR_TEST_ES\"]"
    export PROJECTOR_ELASTICSEARCH__COLLECTIONS='["order_search"]'
    ;;
  *) echo "SEARCH_ENGINE=$SEARCH_ENGINE: only opensearch is started by this script" >&2; exit 2 ;;
esac

log "Building the host and the example plugins"
cargo build --release --locked -p projector-host
(cd plugins && cargo build --release --locked --target wasm32-wasip2 --target-dir "$CACHE/plugins-target")
PROJECTOR=$CARGO_TARGET_DIR/release/projector
export PROJECTOR_PLUGINS__DIR=$STATE/plugins PROJECTOR_PLUGINS__CACHE_DIR=$STATE/cache
# A local demo token for the admin API (and the `projector projections` CLI).
export PROJECTOR_ADMIN_TOKEN=${PROJECTOR_ADMIN_TOKEN:-demo-token-change-me}
export PROJECTOR_ADMIN__TOKENS="[{name=\"demo\", token=\"$PROJECTOR_ADMIN_TOKEN\"}]"
mkdir -p "$PROJECTOR_PLUGINS__DIR"
for plugin in order_summaries order_details daily_order_stats order_search; do
  cp "$CACHE/plugins-target/wasm32-wasip2/release/$plugin.wasm" "$PROJECTOR_PLUGINS__DIR/"
done

log "Creating topic $PROJECTOR_KAFKA__TOPIC and publishing $ORDERS orders"
"$PROJECTOR" create-topic --partitions 6
# A new seed each run: new order ids, so repeated demos add orders instead of replaying them.
"$PROJECTOR" produce-demo --orders "$ORDERS" --seed "$(date +%s)"

log "Running the host until every projection has caught up"
# The watcher starts first, so it sees the first batch land and times the whole catch-up.
"$PROJECTOR" wait --timeout 600 &
WATCHER=$!
sleep 0.5
"$PROJECTOR" run >"$STATE/host.log" 2>&1 &
HOST=$!
trap 'kill -TERM $HOST 2>/dev/null; wait $HOST 2>/dev/null || true' EXIT
if ! wait $WATCHER; then
  tail -n 30 "$STATE/host.log" >&2
  exit 1
fi

PSQL=("$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres projector -P pager=off)
log "read_models.order_summaries (latest 5)"
"${PSQL[@]}" -c "SELECT * FROM read_models.order_summaries ORDER BY updated_at DESC LIMIT 5"
log "read_models.order_details (one shipped order)"
"${PSQL[@]}" -x -c "SELECT * FROM read_models.order_details WHERE status = 'SHIPPED' ORDER BY updated_at DESC LIMIT 1"
log "read_models.daily_order_stats (latest 5 days)"
"${PSQL[@]}" -c "SELECT * FROM read_models.daily_order_stats ORDER BY day DESC LIMIT 5"
"$PROJECTOR" projections list
log "GET /orders/search?q=zoe%20mul&limit=2 (the query API)"
curl -s 'http://127.0.0.1:8080/orders/search?q=zoe%20mul&limit=2' | python3 -m json.tool
log "Host log: $STATE/host.log. Stop the services with: scripts/services.sh stop"
log "Next: run the host ($PROJECTOR run, with the variables of: scripts/services.sh env) and push"
log "  order-summaries v2 blue/green: PROJECTOR_ADMIN_TOKEN=$PROJECTOR_ADMIN_TOKEN $PROJECTOR projections push $CACHE/plugins-target/wasm32-wasip2/release/order_summaries_v2.wasm"
