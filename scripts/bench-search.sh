#!/usr/bin/env bash
# Search latency on 1,000,000 orders under load from a real HTTP load tool (oha), against the
# same search run directly in PostgreSQL by pgbench (the baseline, measured in the same run).
#
#   scripts/bench-search.sh            # ORDERS=1000000 RATE=200 DURATION=30 SINKS="postgres opensearch"
#
# Builds the order-search read model through the real pipeline (produce to Kafka, project with
# the order-search plugin) once per sink: order_search in PostgreSQL, then on the OpenSearch
# node (a database of its own each, the same topic), reporting each projection's rate. Then it
# loads GET /orders/search of each at a fixed rate with three classes of queries: two words as
# typed (a first name and the prefix of a last name), a popular product word, one letter.
# Results go to stdout; copy them into docs/BENCHMARKS.md. Takes 20-40 minutes on 2 cores, most
# of it building the read models.
set -euo pipefail
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-1000000}
RATE=${RATE:-200}
DURATION=${DURATION:-30}
SINKS=${SINKS:-postgres opensearch}
export PROJECTOR_KAFKA__TOPIC=bench-orders-$ORDERS-r2
# shellcheck source=services.sh
source scripts/services.sh
start_all
export PROJECTOR_KAFKA__TOPIC=bench-orders-$ORDERS-r2
PSQL=("$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres)
DB=bench_${ORDERS}_r2
"${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 || "${PSQL[@]}" -qc "CREATE DATABASE $DB"
export PROJECTOR_POSTGRES__URL=postgres://postgres@127.0.0.1:$PG_PORT/$DB
OHA=$CACHE/oha/bin/oha
if [ ! -x "$OHA" ]; then
  log "Installing oha (HTTP load generator) once into $CACHE/oha"
  cargo install oha --locked --root "$CACHE/oha"
fi

log "Building the host and the order-search plugin"
cargo build --release --locked -p projector-host
(cd plugins && cargo build --release --locked --target wasm32-wasip2 --target-dir "$CACHE/plugins-target" -p order-search)
PROJECTOR=$CARGO_TARGET_DIR/release/projector
export PROJECTOR_PLUGINS__DIR=$STATE/bench-plugins PROJECTOR_PLUGINS__CACHE_DIR=$STATE/cache
mkdir -p "$PROJECTOR_PLUGINS__DIR"
cp "$CACHE/plugins-target/wasm32-wasip2/release/order_search.wasm" "$PROJECTOR_PLUGINS__DIR/"

"$PROJECTOR" create-topic --partitions 6
if [ "$("${PSQL[@]}" -d "$DB" -tAc "SELECT count(*) FROM information_schema.tables WHERE table_name = 'order_search'" )" = 0 ]; then
  log "Publishing $ORDERS orders"
  "$PROJECTOR" produce-demo --orders "$ORDERS" --seed 2026
fi

# A first name and the first letters of a last name, as typed (the generator's names, unaccented).
FIRST='(zoe|kenji|jose|francois|chloe|ana|mia|liam|noah|amelie|ines|mateo|olivia|ravi|aiko|emma|lucas|hana|omar|leila|sofia|hugo|nora|priya|astrid|ingrid|mei|pablo|sven|viktor)'
LAST='(mul|wat|alv|dub|lef|bor|now|sch|gar|ros|jan|smi|tan|kow|fer|mor|eri|yil|cos|had|nak|lin|hor|pet|cas|fon|her|lam|mar|ole|per|ram|tho|yam)'
# Popular words: a product name word (each in about one order of six), and one letter typed.
PRODUCT='(espresso|grinder|kettle|filters|stoneware|dripper|scale|decaf|tamper|jug|brew|chemex|aeropress|yirgacheffe|huila|cleaning)'
LETTER='(a|b|c|d|e|f|g|h|k|l|m|n|o|p|r|s|t|v|w|y|z)'

# Loads the running host's search with one class of queries.
load() {
  local what=$1 q=$2
  log "oha ($SINK): GET /orders/search?q=$what, $RATE requests/s for $DURATION s"
  # oha's URL regex: literal dots and question marks as character classes.
  "$OHA" --no-tui -z "${DURATION}s" -q "$RATE" --latency-correction -c 8 \
    --rand-regex-url "http://127[.]0[.]0[.]1:8080/orders/search[?]q=$q&limit=20"
}

# Builds the read model with the order_search collection on $SINK (a database of its own per
# sink, both from the same topic), reports the projection rate, then loads the search.
for SINK in $SINKS; do
  (
    case $SINK in
      postgres) SINK_DB=$DB ;;
      opensearch)
        SINK_DB=${DB}_es
        start_search
        export PROJECTOR_ELASTICSEARCH__URLS="[\"$PROJECTOR_TEST_ES\"]"
        export PROJECTOR_ELASTICSEARCH__COLLECTIONS='["order_search"]'
        export PROJECTOR_ELASTICSEARCH__INDEX_PREFIX="bench-$ORDERS-"
        ;;
      *) echo "SINKS: unknown sink $SINK (postgres, opensearch)" >&2; exit 2 ;;
    esac
    "${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$SINK_DB'" | grep -q 1 || "${PSQL[@]}" -qc "CREATE DATABASE $SINK_DB"
    export PROJECTOR_POSTGRES__URL=postgres://postgres@127.0.0.1:$PG_PORT/$SINK_DB
    log "Projecting (order-search only, order_search on $SINK) until caught up"
    "$PROJECTOR" run >"$STATE/bench-host-$SINK.log" 2>&1 &
    HOST=$!
    trap 'kill -TERM $HOST 2>/dev/null; wait $HOST 2>/dev/null || true' EXIT
    "$PROJECTOR" wait --timeout 3600
    if [ "$SINK" = postgres ]; then
      ROWS=$("${PSQL[@]}" -d "$SINK_DB" -tAc "SELECT count(*) FROM read_models.order_search")
      log "read_models.order_search holds $ROWS orders"
    else
      ROWS=$(curl -fsS "$PROJECTOR_TEST_ES/bench-$ORDERS-order_search/_count" -H 'content-type: application/json' \
        -d '{"query": {"bool": {"must_not": {"term": {"projector-deleted": true}}}}}')
      log "index bench-$ORDERS-order_search: $ROWS"
    fi
    load "<first name> <last-name prefix>" "$FIRST%20$LAST"
    load "<product word>" "$PRODUCT"
    load "<one letter>" "$LETTER"
  )
done

log "Baseline: the same search SQL in PostgreSQL through pgbench, $RATE transactions/s for $DURATION s"
SCRIPT=$(mktemp)
F=$(echo "$FIRST" | tr -d '()') L=$(echo "$LAST" | tr -d '()')
# The statements the API runs: expand the typed prefix through the lexicon, then the ranked,
# counted page (pgbench substitutes :variables, also inside quotes).
cat >"$SCRIPT" <<SQL
\\set f random(1, $(echo "$F" | tr '|' '\n' | wc -l))
\\set l random(1, $(echo "$L" | tr '|' '\n' | wc -l))
SELECT (string_to_array('$F', '|'))[:f] AS first, (string_to_array('$L', '|'))[:l] AS last \\gset
SELECT coalesce(string_agg(word, ' | '), 'nomatch') AS expansion FROM (SELECT word FROM proj_order_search_v1._lexicon_order_search
  WHERE word >= ':last' COLLATE "C" AND word < ':last' || chr(1114111) ORDER BY word LIMIT 33) w \\gset
SELECT order_id, ts_rank(_search, q) AS rank, count(*) OVER () FROM read_models.order_search,
  projector.search_query(':first & (:expansion)') AS q WHERE _search @@ q ORDER BY rank DESC, order_id LIMIT 21;
SQL
"$(pg_bin)/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -f "$SCRIPT" -R "$RATE" -T "$DURATION" -c 8 -j 2 -P 10 -l --log-prefix="$STATE/pgbench" "$DB" | tail -n 12
python3 - "$STATE" <<'PY'
import glob, sys
lat = sorted(int(line.split()[2]) for f in glob.glob(sys.argv[1] + "/pgbench.*") for line in open(f))
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"pgbench latency ms: p50 {q(0.50):.2f}  p90 {q(0.90):.2f}  p99 {q(0.99):.2f}  max {lat[-1]/1000:.2f}  ({len(lat)} queries)")
PY
rm -f "$SCRIPT" "$STATE"/pgbench.*
