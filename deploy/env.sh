#!/usr/bin/env bash
# Makes the settings file (.env) from .env.example when it does not exist yet, with random secrets
# (INGEST_APP_TOKEN, CRON_SECRET, LIGHTHOUSE_PRIVATE_KEY) and the DATABASE_URL / REDIS_URL that carry the
# passwords of deploy/postgres.sh and deploy/redis.sh (the same PG_*/REDIS_* variables pick the instances).
# With KAFKA_SASL=1 or KAFKA_SSL=1 (deploy/kafka.sh) it also holds that broker's client settings: the security
# protocol, the SCRAM user and its password, the CA file.
# The file is written with mode 0600; an existing file is never changed.
# Usage: deploy/env.sh [path]     (default: .env at the repository's root)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:-$root/.env}
if [ -e "$target" ]; then echo "env: using the settings in $target"; exit 0; fi

random() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
database_url=$("$root/deploy/postgres.sh" url ingestflow)
redis_url=$("$root/deploy/redis.sh" url 0)

tmp="$target.$$"
trap 'rm -f "$tmp"' EXIT
umask 077
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    INGEST_APP_TOKEN=*) line="INGEST_APP_TOKEN=$(random)" ;;
    CRON_SECRET=*) line="CRON_SECRET=$(random)" ;;
    LIGHTHOUSE_PRIVATE_KEY=*) line="LIGHTHOUSE_PRIVATE_KEY=$(random)" ;;
    STRIPE_WEBHOOK_SECRET=*) line="STRIPE_WEBHOOK_SECRET=                                       # from Stripe's dashboard; unset: webhook route 404" ;;
    DATABASE_URL=*) line="DATABASE_URL=$database_url" ;;
    REDIS_URL=*) line="REDIS_URL=$redis_url" ;;
    KAFKA_BOOTSTRAP_SERVERS=*)
      if [ "${KAFKA_SASL:-0}" = 1 ] || [ "${KAFKA_SSL:-0}" = 1 ]; then line=$("$root/deploy/kafka.sh" client-env); fi ;;
  esac
  printf '%s\n' "$line"
done < "$root/.env.example" > "$tmp"
chmod 600 "$tmp"
# A hard link never replaces a file another process made first.
if ln "$tmp" "$target" 2>/dev/null; then
  echo "env: generated random secrets into $target (mode 0600): INGEST_APP_TOKEN, CRON_SECRET and"
  echo "     LIGHTHOUSE_PRIVATE_KEY (keep a copy of it: archived objects cannot be decrypted without it);"
  echo "     DATABASE_URL and REDIS_URL hold the passwords of the local PostgreSQL and Redis."
  if grep -q '^KAFKA_SASL_PASSWORD=' "$target"; then echo "     KAFKA_SASL_PASSWORD is the local Kafka's (SCRAM-SHA-512)."; fi
  echo "     Set STRIPE_WEBHOOK_SECRET there from Stripe's dashboard to receive Stripe webhooks."
else
  echo "env: using the settings in $target"
fi
