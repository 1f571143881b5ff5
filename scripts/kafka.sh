#!/usr/bin/env bash
# Apache Kafka 4.4 from Maven Central, one process per broker (KRaft: broker and controller in
# one), for scripts/services.sh and for the tests that start, kill and freeze brokers of their own.
#
#   scripts/kafka.sh libs                      # resolve the jars once (cached); print their dir
#   scripts/kafka.sh configure DIR PORT CPORT [ADVERTISED_PORT]
#                                              # write DIR/server.properties, format DIR/data once
#   scripts/kafka.sh run DIR                   # exec the broker in the foreground (its pid is java's)
#   scripts/kafka.sh wait PORT [SECONDS]       # until the broker answers a metadata request
#   scripts/kafka.sh tool CLASS ARGS...        # a Kafka command-line tool (TopicCommand, ...)
#
# The jars live in $PROJECTOR_CACHE_DIR/kafka-<version>-<pom hash>/libs (default cache:
# $CARGO_HOME/projector-cache); Maven's own cache is ~/.m2. Java 17 and Maven come from Debian's
# packages when the machine lacks them.
set -euo pipefail

KAFKA_SH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=4.4.0
KAFKA_CACHE=${PROJECTOR_CACHE_DIR:-${CARGO_HOME:-$HOME/.cargo}/projector-cache}
KAFKA_POM=$KAFKA_SH_DIR/kafka/pom.xml
KAFKA_HEAP=${PROJECTOR_KAFKA_HEAP:-512m}

kafka_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

kafka_apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "$* missing and this user cannot apt-get install it" >&2; exit 1; fi
  kafka_log "Installing $* (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Kafka 4 brokers need Java 17 or later.
kafka_java_ok() {
  command -v java >/dev/null || return 1
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null
}

kafka_ensure_java() {
  kafka_java_ok || kafka_apt_install openjdk-17-jre-headless
  kafka_java_ok || { echo "Java 17 or later is needed for Apache Kafka" >&2; return 1; }
  command -v mvn >/dev/null || kafka_apt_install maven
  command -v mvn >/dev/null || { echo "Maven is needed to resolve Apache Kafka" >&2; return 1; }
}

kafka_libs_dir() {
  local hash
  hash=$(sha256sum "$KAFKA_POM" | cut -c1-12)
  echo "$KAFKA_CACHE/kafka-$KAFKA_VERSION-$hash/libs"
}

# Resolves the broker, the tools and a logging backend into the cache, once.
kafka_libs() {
  local libs
  libs=$(kafka_libs_dir)
  if [ ! -f "$libs/.complete" ]; then
    kafka_ensure_java || return 1
    kafka_log "Resolving Apache Kafka $KAFKA_VERSION from Maven Central into $libs (once; cached afterwards)"
    rm -rf "$libs" && mkdir -p "$libs"
    # Called inside $(...), where set -e does not apply: every failure is handled here.
    if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$libs" >&2; then
      rm -rf "$libs"
      echo "Could not resolve Apache Kafka from Maven Central" >&2
      return 1
    fi
    touch "$libs/.complete"
  fi
  echo "$libs"
}

kafka_java() {
  local config=$1 libs
  shift
  libs=$(kafka_libs) || return 1
  java -Dlog4j2.configurationFile="$KAFKA_SH_DIR/kafka/$config" -cp "$libs/*" "$@"
}

kafka_configure() {
  # ADVERTISED_PORT: where clients are told to connect (a test's proxy in front of the broker).
  local dir=$1 port=$2 cport=$3 advertised=${4:-$2}
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka.sh: one node, broker and controller in one process (KRaft).
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$advertised,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Tests run session timeouts of a few seconds.
group.min.session.timeout.ms=1000
EOF
  if [ ! -f "$dir/data/meta.properties" ]; then
    local id
    id=$(kafka_java tools-log4j2.properties kafka.tools.StorageTool random-uuid) || return 1
    kafka_java tools-log4j2.properties kafka.tools.StorageTool format --standalone \
      -t "$id" -c "$dir/server.properties" >/dev/null
  fi
}

kafka_run() {
  local dir=$1 libs
  libs=$(kafka_libs) || exit 1
  exec java "-Xmx$KAFKA_HEAP" -Xms128m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_SH_DIR/kafka/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$dir/server.properties"
}

# Waits until the broker on PORT answers a metadata request (the topic listing is one).
kafka_wait() {
  local port=$1 seconds=${2:-120} deadline
  deadline=$((SECONDS + seconds))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "no broker on 127.0.0.1:$port after ${seconds}s" >&2; return 1; }
    sleep 0.2
  done
  until kafka_java tools-log4j2.properties org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "the broker on 127.0.0.1:$port does not answer metadata requests" >&2; return 1; }
    sleep 0.5
  done
}

kafka_tool() {
  local class=$1
  shift
  case "$class" in org.*|kafka.*) ;; *) class=org.apache.kafka.tools.$class ;; esac
  kafka_java tools-log4j2.properties "$class" "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  command=${1:-}
  shift || true
  case "$command" in
    libs) kafka_libs ;;
    configure) kafka_configure "$@" ;;
    run) kafka_run "$@" ;;
    wait) kafka_wait "$@" ;;
    tool) kafka_tool "$@" ;;
    *) echo "usage: $0 libs|configure DIR PORT CPORT [ADVERTISED_PORT]|run DIR|wait PORT [SECONDS]|tool CLASS ARGS..." >&2; exit 2 ;;
  esac
fi
