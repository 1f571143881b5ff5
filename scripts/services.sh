#!/usr/bin/env bash
# Installs (when missing) and starts what Projector needs on one machine: the Rust Wasm target,
# a private PostgreSQL cluster, an Apache Kafka broker (jars from Maven Central, KRaft, one
# process, durable log directory) and a search engine with the Elasticsearch REST API (OpenSearch
# 2.19 from Maven Central, one node, scripts/opensearch.sh).
#
#   scripts/services.sh start    # install what is missing, start all three, create the topic (6 partitions)
#   scripts/services.sh stop     # stop all three (data is kept under $PROJECTOR_STATE_DIR)
#   scripts/services.sh env      # print the environment variables pointing the host (and tests) at them
#
# Sourced by scripts/demo.sh and scripts/test.sh: their start_all starts PostgreSQL and Kafka;
# start_search starts the OpenSearch node. Everything lives under $PROJECTOR_STATE_DIR
# (default: .projector/ in the repository); nothing outside it is touched except the package
# installs, Maven's ~/.m2 and the cached Kafka jars, OpenSearch launcher and cargo target dirs
# under $CARGO_HOME/projector-cache.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
CACHE=${PROJECTOR_CACHE_DIR:-$CARGO_HOME/projector-cache}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
STATE=${PROJECTOR_STATE_DIR:-$REPO/.projector}
PG_PORT=${PROJECTOR_PG_PORT:-55432}
KAFKA_PORT=${PROJECTOR_KAFKA_PORT:-19092}
TOPIC=${PROJECTOR_KAFKA__TOPIC:-order-events}
KAFKA_CONTROLLER_PORT=${PROJECTOR_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
OPENSEARCH_PORT=${PROJECTOR_OPENSEARCH_PORT:-19200}
# shellcheck source=kafka.sh
source "$REPO/scripts/kafka.sh"
# shellcheck source=opensearch.sh
source "$REPO/scripts/opensearch.sh"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ]; then
    log "Installing PostgreSQL (apt-get)"
    if [ "$(id -u)" != 0 ]; then echo "PostgreSQL is missing and this user cannot apt-get install it" >&2; exit 1; fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$dir"
}

ensure_toolchain() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    log "Installing the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
  fi
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "$* missing and this user cannot apt-get install it" >&2; exit 1; fi
  log "Installing $* (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The system tools the Python and JavaScript plugins build with: python3 with venv (the pinned
# componentize-py goes into a cached venv, plugins/python/setup.sh) and Node.js with npm (the
# pinned componentize-js comes from plugins/js/package-lock.json).
ensure_plugin_toolchains() {
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3 python3-venv; fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
}

start_postgres() {
  local bin data=$STATE/pg
  bin=$(pg_bin)
  mkdir -p "$STATE"
  # The cluster runs as the postgres user, which must be able to reach its directory.
  [ "$(id -u)" = 0 ] && chmod 755 "$STATE"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "Creating a private PostgreSQL cluster in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres: "$data" && chmod 700 "$data"
    as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres: "$data"
  if ! as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "Starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
      -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" >/dev/null
  fi
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'projector'" | grep -q 1 \
    || "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE projector"
}

stop_postgres() {
  local bin
  bin=$(pg_bin)
  if [ -f "$STATE/pg/PG_VERSION" ]; then
    as_postgres "$bin/pg_ctl" -D "$STATE/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# The broker: Apache Kafka from Maven Central (scripts/kafka.sh), data under $STATE/kafka, kept
# across restarts; its log is $STATE/kafka/broker.log.
start_kafka() {
  local dir=$STATE/kafka
  local pidfile=$dir/broker.pid
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kafka_wait "$KAFKA_PORT"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
    echo "Something that is not this set-up's broker listens on 127.0.0.1:$KAFKA_PORT (a broker of an older set-up?): stop it first" >&2
    exit 1
  fi
  kafka_ensure_java
  kafka_libs >/dev/null
  kafka_configure "$dir" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
  log "Starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (data $dir/data, log $dir/broker.log)"
  nohup "$REPO/scripts/kafka.sh" run "$dir" </dev/null >>"$dir/broker.log" 2>&1 &
  echo $! >"$pidfile"
  if ! kafka_wait "$KAFKA_PORT" 120 || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "Kafka did not start; see $dir/broker.log" >&2
    tail -n 20 "$dir/broker.log" >&2
    exit 1
  fi
  kafka_tool TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --create --if-not-exists \
    --topic "$TOPIC" --partitions 6 >/dev/null
}

# Stops the broker cleanly (SIGTERM: a controlled shutdown that flushes the logs).
stop_kafka() {
  local pidfile=$STATE/kafka/broker.pid
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  fi
}

# The search engine: OpenSearch from Maven Central (scripts/opensearch.sh), data under
# $STATE/opensearch, kept across restarts; its log is $STATE/opensearch/node.log.
start_opensearch() {
  opensearch_start "$STATE/opensearch" "$OPENSEARCH_PORT" || exit 1
}

# Stops the node cleanly (SIGTERM: the launcher closes it), SIGKILL after 30 s.
stop_opensearch() {
  opensearch_stop "$STATE/opensearch"
}

print_env() {
  echo "export PROJECTOR_POSTGRES__URL=postgres://postgres@127.0.0.1:$PG_PORT/projector"
  echo "export PROJECTOR_KAFKA__BROKERS=127.0.0.1:$KAFKA_PORT"
  echo "export PROJECTOR_KAFKA__TOPIC=$TOPIC"
  echo "export CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
}

print_search_env() {
  opensearch_env "$OPENSEARCH_PORT"
}

start_all() {
  ensure_toolchain
  ensure_plugin_toolchains
  start_postgres
  start_kafka
  eval "$(print_env)"
}

# Not part of start_all yet: the scripts that call start_all do not use the search engine.
start_search() {
  start_opensearch
  eval "$(print_search_env)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    start) start_all; start_search; print_env; print_search_env ;;
    stop) stop_opensearch; stop_kafka; stop_postgres ;;
    env) print_env; print_search_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
  esac
fi
