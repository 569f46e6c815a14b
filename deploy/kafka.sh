#!/usr/bin/env bash
# Single-node KRaft Kafka from the official Apache artifacts on Maven Central.
# Kafka 3.9.1 is pinned: aiokafka 0.14 and faust-streaming 0.15 are tested against 3.x; 4.0 removed
# the old message formats and is thinly tested with them. Usage: deploy/kafka.sh start|stop|status|install
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=3.9.1
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
home_dir="$cache/kafka-$version"
data_dir=${KAFKA_DATA_DIR:-$cache/kafka-data}
port=${KAFKA_PORT:-9092}
ctrl_port=${KAFKA_CONTROLLER_PORT:-9093}
pidfile="$data_dir/kafka.pid"
log="$data_dir/kafka.log"

install() {
  [ -f "$home_dir/libs/kafka_2.13-$version.jar" ] && return 0
  echo "kafka: resolving org.apache.kafka:kafka_2.13:$version with Maven into $home_dir" >&2
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$home_dir/libs.partial" >&2
  rm -rf "$home_dir/libs" && mv "$home_dir/libs.partial" "$home_dir/libs"
}

write_config() {
  mkdir -p "$data_dir/logs"
  cat > "$data_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data_dir/logs
num.partitions=4
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
PROPS
  cat > "$data_dir/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$data_dir/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
PROPS
}

java_run() {
  java -Xms256m -Xmx1g -Dlog4j.configuration="file:$data_dir/log4j.properties" \
    -cp "$home_dir/libs/*" "$@"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  install
  if running && answers; then echo "kafka: already running on 127.0.0.1:$port"; return 0; fi
  write_config
  if [ ! -f "$data_dir/logs/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "ingestflow-local-cluster01" \
      -c "$data_dir/server.properties" >/dev/null
  fi
  # The previous run's log moves aside, so the wait below reads only this start's lines (and a long-lived
  # broker's log does not grow without bound).
  [ -f "$data_dir/server.log" ] && mv -f "$data_dir/server.log" "$data_dir/server.log.1"
  nohup java -Xms256m -Xmx1g -Dlog4j.configuration="file:$data_dir/log4j.properties" \
    -cp "$home_dir/libs/*" kafka.Kafka "$data_dir/server.properties" >"$log" 2>&1 &
  echo $! > "$pidfile"
  # After an unclean stop (kill -9, power loss) the broker recovers every partition's log before it serves,
  # which takes minutes with thousands of partitions: wait while it is alive and still starting, polling its
  # own log (cheap) rather than starting a client JVM every second on a machine it is busy recovering on.
  local timeout=${KAFKA_START_TIMEOUT_S:-900} waited=0
  while [ "$waited" -lt "$timeout" ]; do
    running || { echo "kafka: exited during start-up, see $log and $data_dir/server.log" >&2; tail -20 "$log" >&2; return 1; }
    if grep -q "Kafka Server started" "$data_dir/server.log" 2>/dev/null && answers \
        && java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list >/dev/null 2>&1; then
      echo "kafka: up on 127.0.0.1:$port after ${waited} s (data in $data_dir)"; return 0
    fi
    [ $((waited % 30)) -eq 29 ] && echo "kafka: still starting after $((waited + 1)) s (recovering its logs)" >&2
    sleep 1; waited=$((waited + 1))
  done
  echo "kafka: did not answer within $timeout s, see $data_dir/server.log" >&2; return 1
}

stop() {
  running || { echo "kafka: not running"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "kafka: stopped"; return 0; }; sleep 1; done
  kill -9 "$pid" 2>/dev/null || true; rm -f "$pidfile"; echo "kafka: killed"
}

status() {
  if running && answers; then echo "kafka: running on 127.0.0.1:$port"; else echo "kafka: stopped"; return 3; fi
}

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
