#!/usr/bin/env bash
# The whole stack in the foreground: services, migrations, topics, gateway on $PORT (8787) and a worker.
# Ctrl-C stops the gateway, the worker and every service this script started.
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
set -a
if [ -f .env ]; then . ./.env; else . ./.env.example; fi
set +a
ingestflow run
