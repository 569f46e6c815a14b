#!/usr/bin/env bash
# Single-node KRaft Kafka from the official Apache artifacts on Maven Central.
# Kafka 3.9.1 is pinned: aiokafka 0.14 and faust-streaming 0.15 are tested against 3.x; 4.0 removed
# the old message formats and is thinly tested with them.
# Usage: deploy/kafka.sh install|start|stop|restart|status|client-env
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_DATA_DIR move an instance to its own ports and data.
#   KAFKA_SASL=1: clients sign in with SCRAM-SHA-512 as user `ingestflow`, whose password is generated once into
#     <data dir>.password; the broker's own user `admin` has its password in <data dir>/admin.password. Both
#     users are created when the data directory is formatted (a directory formatted without them is refused).
#   KAFKA_SSL=1: the client listener speaks TLS, with a CA and certificates made by openssl into
#     <data dir>/tls (ca.pem is the clients' KAFKA_SSL_CAFILE; the broker's keystore is PKCS12). The
#     controller listener then takes only the holders of a certificate of that CA (the broker itself).
#   KAFKA_SSL_CLIENT_AUTH=required: TLS clients must show a certificate of that CA too (tls/client.pem, .key).
#   With both, the client listener is SASL_SSL. `client-env` prints the settings ingestflow needs for this
#   instance (KAFKA_BOOTSTRAP_SERVERS, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*), one NAME=value a line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/password.sh"
version=3.9.1
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
home_dir="$cache/kafka-$version"
data_dir=${KAFKA_DATA_DIR:-$cache/kafka-data}
port=${KAFKA_PORT:-9092}
ctrl_port=${KAFKA_CONTROLLER_PORT:-9093}
# The port clients are told to connect to after their first metadata request: another than $port when a
# proxy sits in front of the broker (the fault-injection tests), so that clients keep going through it.
advertised_port=${KAFKA_ADVERTISED_PORT:-$port}
data_dir=${data_dir%/}
pidfile="$data_dir/kafka.pid"
log="$data_dir/kafka.log"
sasl=${KAFKA_SASL:-0}
ssl=${KAFKA_SSL:-0}
client_auth=${KAFKA_SSL_CLIENT_AUTH:-none}
case "$sasl:$ssl" in
  0:0) protocol=PLAINTEXT ;; 1:0) protocol=SASL_PLAINTEXT ;; 0:1) protocol=SSL ;; 1:1) protocol=SASL_SSL ;;
  *) echo "kafka: KAFKA_SASL and KAFKA_SSL must be 0 or 1" >&2; exit 2 ;;
esac
case "$client_auth" in none|required) ;; *) echo "kafka: KAFKA_SSL_CLIENT_AUTH must be none or required" >&2; exit 2 ;; esac
controller_protocol=PLAINTEXT
[ "$ssl" = 1 ] && controller_protocol=SSL
tls_dir="$data_dir/tls"
user=ingestflow
# The marker of a data directory formatted with the SCRAM users.
scram_marker="$data_dir/scram-users"

install() {
  [ -f "$home_dir/libs/kafka_2.13-$version.jar" ] && return 0
  echo "kafka: resolving org.apache.kafka:kafka_2.13:$version with Maven into $home_dir" >&2
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$home_dir/libs.partial" >&2
  rm -rf "$home_dir/libs" && mv "$home_dir/libs.partial" "$home_dir/libs"
}

password() { generated_password "$data_dir.password"; }
admin_password() { generated_password "$data_dir/admin.password"; }
keystore_password() { generated_password "$tls_dir/keystore.password"; }

# A CA, the broker's certificate (for 127.0.0.1 and localhost, server and client use: the broker connects to
# its own listeners) and a client certificate, made once; the CA's key never leaves $tls_dir.
make_certificates() {
  [ -s "$tls_dir/broker.p12" ] && [ -s "$tls_dir/client.pem" ] && return 0
  mkdir -p "$tls_dir" && chmod 700 "$tls_dir"
  keystore_password >/dev/null
  (
    cd "$tls_dir" && umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=ingestflow local CA" \
      -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    for name in broker client; do
      openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
      printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$name.ext"
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
      rm -f "$name.csr" "$name.ext"
    done
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout file:keystore.password -out broker.p12.partial
    mv broker.p12.partial broker.p12
    chmod 644 ca.pem
  )
}

# The TLS settings of the broker, and of the Kafka tools this script runs against it.
ssl_properties() {
  cat <<PROPS
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls_dir/broker.p12
ssl.keystore.password=$(keystore_password)
ssl.truststore.type=PEM
ssl.truststore.location=$tls_dir/ca.pem
PROPS
}

jaas() { echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"$2\";"; }

# What the Kafka tools of this script need to connect: the broker's own user and certificate.
write_tool_config() {
  (umask 077; {
    echo "security.protocol=$protocol"
    if [ "$ssl" = 1 ]; then ssl_properties; fi
    if [ "$sasl" = 1 ]; then
      echo "sasl.mechanism=SCRAM-SHA-512"
      echo "sasl.jaas.config=$(jaas admin "$(admin_password)")"
    fi
  } > "$data_dir/tools.properties")
}

write_config() {
  mkdir -p "$data_dir/logs"
  if [ "$ssl" = 1 ]; then make_certificates; fi
  # Holds the broker's passwords when SASL or TLS is on.
  (umask 077; {
  cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctrl_port
listeners=$protocol://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctrl_port
advertised.listeners=$protocol://127.0.0.1:$advertised_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:$controller_protocol
inter.broker.listener.name=$protocol
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
  if [ "$ssl" = 1 ]; then
    ssl_properties
    echo "ssl.client.auth=$client_auth"
    echo "listener.name.controller.ssl.client.auth=required"
  fi
  if [ "$sasl" = 1 ]; then
    local listener; listener=$(echo "$protocol" | tr 'A-Z' 'a-z')
    echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
    echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
    echo "listener.name.$listener.scram-sha-512.sasl.jaas.config=$(jaas admin "$(admin_password)")"
  fi
  } > "$data_dir/server.properties")
  write_tool_config
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
    local scram=()
    # The SCRAM users are part of the cluster's metadata from its first record on. (The passwords are in this
    # one short-lived process's arguments: kafka-storage reads them nowhere else.)
    if [ "$sasl" = 1 ]; then scram=(--add-scram "SCRAM-SHA-512=[name=admin,password=$(admin_password)]"
                                    --add-scram "SCRAM-SHA-512=[name=$user,password=$(password)]"); fi
    java_run kafka.tools.StorageTool format -t "ingestflow-local-cluster01" \
      -c "$data_dir/server.properties" "${scram[@]}" >/dev/null
    if [ "$sasl" = 1 ]; then touch "$scram_marker"; fi
  fi
  if [ "$sasl" = 1 ] && [ ! -f "$scram_marker" ]; then
    echo "kafka: $data_dir was formatted without the SCRAM users KAFKA_SASL=1 needs; use a new KAFKA_DATA_DIR" >&2
    return 1
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
        && java_run org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" \
             --command-config "$data_dir/tools.properties" --list >/dev/null 2>&1; then
      echo "kafka: up on 127.0.0.1:$port ($protocol) after ${waited} s (data in $data_dir)"; return 0
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

# The client settings of this instance, for .env (deploy/env.sh) or a test's environment.
client_env() {
  echo "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$port"
  echo "KAFKA_SECURITY_PROTOCOL=$protocol"
  if [ "$sasl" = 1 ]; then
    echo "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    echo "KAFKA_SASL_USERNAME=$user"
    echo "KAFKA_SASL_PASSWORD=$(password)"
  fi
  if [ "$ssl" = 1 ]; then
    make_certificates
    echo "KAFKA_SSL_CAFILE=$tls_dir/ca.pem"
    if [ "$client_auth" = required ]; then
      echo "KAFKA_SSL_CERTFILE=$tls_dir/client.pem"
      echo "KAFKA_SSL_KEYFILE=$tls_dir/client.key"
    fi
  fi
}

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;; client-env) client_env ;;
  *) echo "usage: $0 install|start|stop|restart|status|client-env" >&2; exit 2 ;;
esac
