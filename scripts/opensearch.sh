#!/usr/bin/env bash
# OpenSearch 2.19.6 from Maven Central, one embedded node (scripts/opensearch/): the search engine
# with the Elasticsearch REST API that the tests and the demo run against.
#
#   scripts/opensearch.sh start [DIR] [PORT]   # resolve and compile once (cached), start it in the
#                                              # background, wait for a yellow cluster
#   scripts/opensearch.sh stop [DIR]           # SIGTERM (a clean close), SIGKILL after 30 s
#   scripts/opensearch.sh status [DIR]         # exit 0 and the cluster health when it answers
#   scripts/opensearch.sh env [PORT]           # the export line pointing the tests at it
#   scripts/opensearch.sh libs                 # resolve once; print the cache dir (jar, classpath)
#   scripts/opensearch.sh run DIR PORT         # exec the node in the foreground (its pid is java's)
#
# DIR defaults to $PROJECTOR_STATE_DIR/opensearch (data in DIR/data, log DIR/node.log, pid
# DIR/node.pid), PORT to $PROJECTOR_OPENSEARCH_PORT or 19200, the heap to
# $PROJECTOR_OPENSEARCH_HEAP or 1g. The jars live in ~/.m2 (Maven's cache); the classpath and the
# compiled launcher in $PROJECTOR_CACHE_DIR/opensearch-<version>-<hash of pom and launcher>/
# (default cache: $CARGO_HOME/projector-cache), so a warm start runs no Maven. Java 17 (a JDK:
# javac) and Maven come from Debian's packages when the machine lacks them.
set -euo pipefail

OPENSEARCH_SH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OPENSEARCH_VERSION=2.19.6
OPENSEARCH_CACHE=${PROJECTOR_CACHE_DIR:-${CARGO_HOME:-$HOME/.cargo}/projector-cache}
OPENSEARCH_SRC=$OPENSEARCH_SH_DIR/opensearch
OPENSEARCH_POM=$OPENSEARCH_SRC/pom.xml
OPENSEARCH_LAUNCHER=$OPENSEARCH_SRC/src/main/java/dev/projector/search/ProjectorSearchNode.java
OPENSEARCH_HEAP=${PROJECTOR_OPENSEARCH_HEAP:-1g}

opensearch_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

opensearch_apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "$* missing and this user cannot apt-get install it" >&2; return 1; fi
  opensearch_log "Installing $* (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# OpenSearch 2.19 supports Java 11 to 21 (tried here on 17, the default, and 25, where the class-data
# archive made with 17 is ignored); the launcher is compiled here, so a JDK is needed.
opensearch_java_ok() {
  command -v java >/dev/null && command -v javac >/dev/null && command -v jar >/dev/null || return 1
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null
}

opensearch_ensure_java() {
  opensearch_java_ok || opensearch_apt_install openjdk-17-jdk-headless || return 1
  opensearch_java_ok || { echo "a Java 17 (or later) JDK is needed for OpenSearch" >&2; return 1; }
  command -v mvn >/dev/null || opensearch_apt_install maven || return 1
  command -v mvn >/dev/null || { echo "Maven is needed to resolve OpenSearch" >&2; return 1; }
  command -v curl >/dev/null || opensearch_apt_install curl || return 1
}

opensearch_default_dir() {
  echo "${PROJECTOR_STATE_DIR:-$(cd "$OPENSEARCH_SH_DIR/.." && pwd)/.projector}/opensearch"
}

# DIR (or the default one) as an absolute path.
opensearch_dir() {
  local dir=${1:-$(opensearch_default_dir)}
  case "$dir" in /*) echo "$dir" ;; *) echo "$PWD/$dir" ;; esac
}

opensearch_cache_dir() {
  local hash
  hash=$(cat "$OPENSEARCH_POM" "$OPENSEARCH_LAUNCHER" | sha256sum | cut -c1-12)
  echo "$OPENSEARCH_CACHE/opensearch-$OPENSEARCH_VERSION-$hash"
}

# True when every jar of the cached classpath is still in ~/.m2 (it may have been cleaned).
opensearch_classpath_ok() {
  local jar
  [ -s "$1/classpath" ] || return 1
  while IFS= read -r jar; do
    [ -f "$jar" ] || return 1
  done < <(tr ':' '\n' <"$1/classpath")
}

opensearch_libs_ok() {
  [ -f "$1/.complete" ] && opensearch_classpath_ok "$1"
}

# Resolves the jars (Maven, into ~/.m2) and compiles the launcher into the cache, once; a lock
# keeps two starts on the same machine from building the same directory at the same time.
opensearch_libs() {
  local dir
  dir=$(opensearch_cache_dir)
  if ! opensearch_libs_ok "$dir"; then
    mkdir -p "$OPENSEARCH_CACHE"
    # A subshell, so that the lock's descriptor does not reach the node started afterwards.
    (
      flock 9
      opensearch_libs_ok "$dir" || opensearch_build "$dir"
    ) 9>"$dir.lock" || return 1
  fi
  echo "$dir"
}

opensearch_build() {
  local dir=$1
  opensearch_ensure_java || return 1
  opensearch_log "Resolving OpenSearch $OPENSEARCH_VERSION from Maven Central and compiling its launcher into $dir (once; cached afterwards)"
  rm -rf "$dir" && mkdir -p "$dir/classes"
  # Runs where set -e does not apply (a subshell left with ||): every failure is handled here.
  if ! mvn -q -B -Dstyle.color=never -f "$OPENSEARCH_POM" dependency:build-classpath \
      -Dmdep.includeScope=runtime -Dmdep.outputFile="$dir/classpath" >&2; then
    rm -rf "$dir"
    echo "Could not resolve OpenSearch from Maven Central" >&2
    return 1
  fi
  if ! javac -nowarn --release 17 -d "$dir/classes" -cp "$(cat "$dir/classpath")" "$OPENSEARCH_LAUNCHER" >&2 \
      || ! jar --create --file "$dir/projector-search-node.jar" -C "$dir/classes" . >&2; then
    rm -rf "$dir"
    echo "Could not compile the OpenSearch launcher ($OPENSEARCH_LAUNCHER)" >&2
    return 1
  fi
  rm -rf "$dir/classes"
  opensearch_train "$dir"
  touch "$dir/.complete"
}

# The JVM options of the node, into the array OPENSEARCH_JVM_OPTS: the heap and the system
# properties the distribution's launcher sets for 2.x on Java 17 (SystemJvmOptions, jvm.options).
opensearch_jvm_opts() {
  local dir=$1
  OPENSEARCH_JVM_OPTS=("-Xms$OPENSEARCH_HEAP" "-Xmx$OPENSEARCH_HEAP" -XX:+UseG1GC -XX:G1ReservePercent=25
    -XX:InitiatingHeapOccupancyPercent=30 -XX:-OmitStackTraceInFastThrow "-XX:ErrorFile=$dir/hs_err_pid%p.log"
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true "-Djava.io.tmpdir=$dir/tmp"
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Djava.locale.providers=SPI,COMPAT)
}

# Starts a throwaway node once (any free port) and lets the JVM write, when it exits, the archive
# of the classes it loaded (AppCDS, node.jsa in the cache): later starts map them instead of
# parsing them from the jars again, about twice as fast. Without an archive the node still
# runs; with one that no longer matches the classpath the JVM warns in the log and ignores it.
opensearch_train() {
  local cache=$1 home=$1/training
  mkdir -p "$home/config" "$home/tmp"
  cp "$OPENSEARCH_SRC/log4j2.properties" "$home/config/log4j2.properties"
  opensearch_jvm_opts "$home"
  opensearch_log "Writing the class-data archive of the node (one throwaway start)"
  if ! timeout 300 java "${OPENSEARCH_JVM_OPTS[@]}" "-XX:ArchiveClassesAtExit=$cache/node.jsa" \
      -cp "$cache/projector-search-node.jar:$(cat "$cache/classpath")" \
      dev.projector.search.ProjectorSearchNode --home "$home" --port 0 --exit-after-start >"$cache/training.log" 2>&1; then
    echo "The training start of OpenSearch failed (the node starts without a class-data archive); its log:" >&2
    tail -n 20 "$cache/training.log" >&2
    rm -f "$cache/node.jsa"
  fi
  rm -rf "$home"
}

opensearch_run() {
  local dir port=$2 libs
  dir=$(opensearch_dir "$1")
  libs=$(opensearch_libs) || exit 1
  mkdir -p "$dir/config" "$dir/tmp"
  cp "$OPENSEARCH_SRC/log4j2.properties" "$dir/config/log4j2.properties"
  opensearch_jvm_opts "$dir"
  [ -f "$libs/node.jsa" ] && OPENSEARCH_JVM_OPTS+=("-XX:SharedArchiveFile=$libs/node.jsa")
  exec java "${OPENSEARCH_JVM_OPTS[@]}" -cp "$libs/projector-search-node.jar:$(cat "$libs/classpath")" \
    dev.projector.search.ProjectorSearchNode --home "$dir" --data "$dir/data" --port "$port"
}

# Waits until the node on PORT reports a yellow (or green) cluster; gives up early when PID dies.
opensearch_wait() {
  local port=$1 seconds=${2:-120} pid=${3:-} deadline
  deadline=$((SECONDS + seconds))
  until curl -fsS -o /dev/null --max-time 5 \
      "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "the OpenSearch node (pid $pid) exited" >&2
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { echo "no yellow OpenSearch cluster on 127.0.0.1:$port after ${seconds}s" >&2; return 1; }
    sleep 0.5
  done
}

opensearch_running() {
  local pidfile=$1/node.pid
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

opensearch_start() {
  local dir port=${2:-${PROJECTOR_OPENSEARCH_PORT:-19200}}
  dir=$(opensearch_dir "${1:-}")
  local pidfile=$dir/node.pid started=$SECONDS
  if opensearch_running "$dir"; then
    if [ "$(cat "$dir/node.port" 2>/dev/null)" != "$port" ]; then
      echo "The OpenSearch node of $dir runs on port $(cat "$dir/node.port" 2>/dev/null), not $port: stop it first" >&2
      return 1
    fi
    opensearch_wait "$port" 120 "$(cat "$pidfile")"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "Something that is not this set-up's OpenSearch node listens on 127.0.0.1:$port: stop it first" >&2
    return 1
  fi
  opensearch_libs >/dev/null || return 1
  mkdir -p "$dir"
  opensearch_log "Starting OpenSearch $OPENSEARCH_VERSION on 127.0.0.1:$port (heap $OPENSEARCH_HEAP, data $dir/data, log $dir/node.log)"
  nohup "$OPENSEARCH_SH_DIR/opensearch.sh" run "$dir" "$port" </dev/null >>"$dir/node.log" 2>&1 &
  echo $! >"$pidfile"
  echo "$port" >"$dir/node.port"
  if ! opensearch_wait "$port" "${PROJECTOR_OPENSEARCH_START_TIMEOUT:-120}" "$(cat "$pidfile")"; then
    echo "OpenSearch did not start; see $dir/node.log" >&2
    tail -n 30 "$dir/node.log" >&2
    opensearch_stop "$dir"
    return 1
  fi
  opensearch_log "OpenSearch is up after $((SECONDS - started))s (pid $(cat "$pidfile"))"
}

# Stops the node cleanly (SIGTERM: the launcher's shutdown hook closes it), SIGKILL after 30 s.
opensearch_stop() {
  local dir pidfile
  dir=$(opensearch_dir "${1:-}")
  pidfile=$dir/node.pid
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "OpenSearch (pid $pid) did not stop within 30s: killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
}

opensearch_status() {
  local dir port
  dir=$(opensearch_dir "${1:-}")
  if ! opensearch_running "$dir"; then
    echo "OpenSearch ($dir) is not running"
    return 3
  fi
  port=$(cat "$dir/node.port")
  if ! curl -fsS --max-time 5 "http://127.0.0.1:$port/_cluster/health"; then
    echo "OpenSearch (pid $(cat "$dir/node.pid")) does not answer on 127.0.0.1:$port" >&2
    return 1
  fi
  echo
  echo "OpenSearch $OPENSEARCH_VERSION runs (pid $(cat "$dir/node.pid")) on http://127.0.0.1:$port"
}

opensearch_env() {
  echo "export PROJECTOR_TEST_ES=http://127.0.0.1:${1:-${PROJECTOR_OPENSEARCH_PORT:-19200}}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  command=${1:-}
  shift || true
  case "$command" in
    start) opensearch_start "$@"; opensearch_env "${2:-}" ;;
    stop) opensearch_stop "$@" ;;
    status) opensearch_status "$@" ;;
    env) opensearch_env "$@" ;;
    libs) opensearch_libs ;;
    run) opensearch_run "$@" ;;
    *) echo "usage: $0 start [DIR] [PORT]|stop [DIR]|status [DIR]|env [PORT]|libs|run DIR PORT" >&2; exit 2 ;;
  esac
fi
