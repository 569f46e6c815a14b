#!/usr/bin/env bash
# PostgreSQL from Debian's packages, one private cluster on 127.0.0.1 with the ingestflow role and databases.
# Authentication: the OS user that owns the cluster is its superuser over the Unix socket (peer); every other
# connection signs in with a password (scram-sha-256). The ingestflow role's password is generated once into
# <data dir>.password (mode 0600, next to the data directory, so each cluster has its own); `start` converts a
# cluster made with --auth=trust in place.
# Usage: deploy/postgres.sh install|start|stop|status|url [database]
#   PG_PORT (5432), PG_DATA_DIR move an instance to its own port and data directory.
#   `url` prints the DATABASE_URL of the ingestflow role (generating the password when it is missing).
set -euo pipefail
. "$(dirname "$0")/password.sh"
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
# As root the cluster belongs to the postgres user, who cannot enter /root: keep it under /var/lib then.
if [ "$(id -u)" = 0 ]; then default_dir=/var/lib/ingestflow/pgdata; else default_dir=$cache/pgdata; fi
data_dir=${PG_DATA_DIR:-$default_dir}
data_dir=${data_dir%/}
port=${PG_PORT:-5432}
password_file="$data_dir.password"
socket_dir=/tmp
user=ingestflow
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
owner() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }

password() { generated_password "$password_file"; }

url() { echo "postgresql://$user:$(password)@127.0.0.1:$port/${1:-ingestflow}"; }

running() { as_owner "$(bindir)/pg_ctl" -D "$data_dir" status >/dev/null 2>&1; }

psql_admin() {
  as_owner "$(bindir)/psql" -h "$socket_dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

hba() {
  cat <<HBA
# Written by deploy/postgres.sh: the cluster owner is the superuser over the Unix socket (peer, see
# pg_ident.conf); everyone else signs in with a password.
local   all   postgres                      peer map=owner
local   all   all                           scram-sha-256
host    all   all          127.0.0.1/32     scram-sha-256
host    all   all          ::1/128          scram-sha-256
HBA
}

# Idempotent: a trust cluster (the former default) is switched to passwords in place, without a restart.
configure_auth() {
  local ident="owner   $(owner)   postgres"
  if ! grep -qxF "$ident" "$data_dir/pg_ident.conf" 2>/dev/null; then
    echo "$ident" | as_owner tee -a "$data_dir/pg_ident.conf" >/dev/null
  fi
  if [ "$(hba)" != "$(cat "$data_dir/pg_hba.conf" 2>/dev/null)" ]; then
    grep -qE '^[^#]*[[:space:]]trust([[:space:]]|$)' "$data_dir/pg_hba.conf" 2>/dev/null \
      && echo "postgres: switching $data_dir from trust to password authentication" >&2
    hba | as_owner tee "$data_dir/pg_hba.conf" >/dev/null
    if running; then as_owner "$(bindir)/pg_ctl" -D "$data_dir" reload >/dev/null; fi
  fi
}

start() {
  install
  if [ ! -f "$data_dir/PG_VERSION" ]; then
    mkdir -p "$data_dir"
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$data_dir" && chmod 700 "$data_dir"
    as_owner "$(bindir)/initdb" -D "$data_dir" -U postgres --auth-local=peer --auth-host=reject -E UTF8 >/dev/null
  fi
  configure_auth
  if ! running; then
    as_owner "$(bindir)/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $socket_dir -c fsync=on" start >/dev/null
  fi
  psql_admin -c "SELECT 1" >/dev/null
  if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$user'")" ]; then
    psql_admin -c "CREATE ROLE $user LOGIN CREATEDB"
  fi
  # On stdin, so the password shows in no process list; set on every start so role and file always agree.
  printf "SET password_encryption = 'scram-sha-256';\nALTER ROLE %s PASSWORD '%s';\n" "$user" "$(password)" \
    | psql_admin >/dev/null
  for db in $databases; do
    if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
      psql_admin -c "CREATE DATABASE $db OWNER $user"
    fi
  done
  echo "postgres: up on 127.0.0.1:$port (data in $data_dir, password of role $user in $password_file)"
}

stop() {
  if running; then as_owner "$(bindir)/pg_ctl" -D "$data_dir" -m fast -w stop >/dev/null; echo "postgres: stopped"; else echo "postgres: not running"; fi
}

status() { if [ -n "$(bindir)" ] && running; then echo "postgres: running on 127.0.0.1:$port"; else echo "postgres: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  url) url "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|restart|status|url [database]" >&2; exit 2 ;;
esac
