#!/usr/bin/env bash
# The whole stack in the foreground: services, migrations, topics, gateway on $PORT (8787) and a worker, each
# restarted when it dies. On the first run the settings file .env is made with random secrets (deploy/env.sh).
# Ctrl-C stops the gateway, the worker and every service this script started.
# KAFKA_SASL=1 and/or KAFKA_SSL=1 start the local Kafka with SCRAM-SHA-512 and/or TLS (deploy/kafka.sh); a .env made
# then holds its client settings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/deploy/setup.sh"
started=()
for s in postgres redis kafka; do
  if ! "$root/deploy/$s.sh" status >/dev/null 2>&1; then "$root/deploy/$s.sh" start; started+=("$s"); fi
done
cleanup() {
  for ((i=${#started[@]}-1; i>=0; i--)); do "$root/deploy/${started[i]}.sh" stop || true; done
}
trap cleanup EXIT
"$root/deploy/env.sh" "$root/.env"
# `ingestflow` reads .env itself (the environment wins over it).
"$root/.venv/bin/ingestflow" run
