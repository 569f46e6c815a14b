#!/usr/bin/env bash
# PostgreSQL from Debian's packages, one private cluster on 127.0.0.1 with the ingestflow role and databases.
# Usage: deploy/postgres.sh install|start|stop|status
set -euo pipefail
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
# As root the cluster belongs to the postgres user, who cannot enter /root: keep it under /var/lib then.
if [ "$(id -u)" = 0 ]; then default_dir=/var/lib/ingestflow/pgdata; else default_dir=$cache/pgdata; fi
data_dir=${PG_DATA_DIR:-$default_dir}
port=${PG_PORT:-5432}
user=ingestflow
password=ingestflow
databases="ingestflow ingestflow_test"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

install() {
  if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/postgres" ]; then
    echo "postgres: installing Debian's postgresql package" >&2
    [ "$(id -u)" = 0 ] || { echo "postgres: run as root or install the postgresql package" >&2; exit 1; }
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

running() { as_owner "$(bindir)/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; }

psql_admin() { as_owner "$(bindir)/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

start() {
  install
  if [ ! -f "$data_dir/PG_VERSION" ]; then
    mkdir -p "$data_dir"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$data_dir" && chmod 700 "$data_dir"
    as_owner "$(bindir)/initdb" -D "$data_dir" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! running; then
    as_owner "$(bindir)/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k /tmp -c fsync=on" start >/dev/null
  fi
  psql_admin -c "SELECT 1" >/dev/null
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$user'")" ]; then
    psql_admin -c "CREATE ROLE $user LOGIN PASSWORD '$password' CREATEDB"
  fi
  for db in $databases; do
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
      psql_admin -c "CREATE DATABASE $db OWNER $user"
    fi
  done
  echo "postgres: up on 127.0.0.1:$port (data in $data_dir)"
}

stop() {
  if running; then as_owner "$(bindir)/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null; echo "postgres: stopped"; else echo "postgres: not running"; fi
}

status() { if [ -n "$(bindir)" ] && running; then echo "postgres: running on 127.0.0.1:$port"; else echo "postgres: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
