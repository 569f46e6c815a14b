#!/usr/bin/env bash
# Redis from Debian's packages on 127.0.0.1, append-only so the hot data survives a restart, with a password
# generated once into <data dir>.password (mode 0600, next to the data directory, so each instance has its
# own). `start` also sets the password on a running instance that has none.
# Usage: deploy/redis.sh install|start|stop|status|url [db]
#   REDIS_PORT (6379), REDIS_DATA_DIR move an instance to its own port and data directory.
#   `url` prints the REDIS_URL (generating the password when it is missing).
set -euo pipefail
. "$(dirname "$0")/password.sh"
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
data_dir=${REDIS_DATA_DIR:-$cache/redis}
data_dir=${data_dir%/}
port=${REDIS_PORT:-6379}
password_file="$data_dir.password"

install() {
  command -v redis-server >/dev/null && return 0
  echo "redis: installing Debian's redis-server package" >&2
  [ "$(id -u)" = 0 ] || { echo "redis: run as root or install the redis-server package" >&2; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

password() { generated_password "$password_file"; }

url() { echo "redis://:$(password)@127.0.0.1:$port/${1:-0}"; }

# REDISCLI_AUTH keeps the password out of the process list.
cli() { REDISCLI_AUTH=$(password) redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" "$@"; }

answers() { cli ping 2>/dev/null | grep -q PONG; }

answers_without_password() { env -u REDISCLI_AUTH redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

write_config() {
  mkdir -p "$data_dir"
  (umask 077; cat > "$data_dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
protected-mode yes
daemonize yes
dir $data_dir
pidfile $data_dir/redis.pid
logfile $data_dir/redis.log
appendonly yes
save ""
requirepass $(password)
CONF
  )
}

start() {
  install
  if answers_without_password; then
    # A running instance from before passwords: require the password now (on stdin, never in argv), and close
    # the connections opened without it.
    password | redis-cli -h 127.0.0.1 -p "$port" -x config set requirepass >/dev/null
    cli client kill type normal >/dev/null
    answers && ! answers_without_password \
      && { echo "redis: running on 127.0.0.1:$port, now with the password in $password_file"; return 0; }
    echo "redis: could not set the password on the instance on 127.0.0.1:$port" >&2; return 1
  fi
  if answers; then echo "redis: already running on 127.0.0.1:$port"; return 0; fi
  write_config
  redis-server "$data_dir/redis.conf" >/dev/null
  for _ in $(seq 1 50); do
    answers && { echo "redis: up on 127.0.0.1:$port (password in $password_file)"; return 0; }
    sleep 0.2
  done
  echo "redis: did not answer, see $data_dir/redis.log" >&2; return 1
}

stop() {
  if answers; then cli shutdown >/dev/null 2>&1 || true; fi
  for _ in $(seq 1 50); do answers || { echo "redis: stopped"; return 0; }; sleep 0.2; done
  echo "redis: still answering" >&2; return 1
}

status() { if answers; then echo "redis: running on 127.0.0.1:$port"; else echo "redis: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  url) url "${2:-}" ;;
  *) echo "usage: $0 install|start|stop|restart|status|url [db]" >&2; exit 2 ;;
esac
