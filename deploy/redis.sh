#!/usr/bin/env bash
# Redis from Debian's packages on 127.0.0.1, append-only so the hot data survives a restart.
# Usage: deploy/redis.sh install|start|stop|status
set -euo pipefail
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
data_dir=${REDIS_DATA_DIR:-$cache/redis}
port=${REDIS_PORT:-6379}

install() {
  command -v redis-server >/dev/null && return 0
  echo "redis: installing Debian's redis-server package" >&2
  [ "$(id -u)" = 0 ] || { echo "redis: run as root or install the redis-server package" >&2; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
}

answers() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }

start() {
  install
  if answers; then echo "redis: already running on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$data_dir"
  redis-server --bind 127.0.0.1 --port "$port" --protected-mode yes --daemonize yes \
    --dir "$data_dir" --pidfile "$data_dir/redis.pid" --logfile "$data_dir/redis.log" \
    --appendonly yes --save "" >/dev/null
  for _ in $(seq 1 50); do answers && { echo "redis: up on 127.0.0.1:$port"; return 0; }; sleep 0.2; done
  echo "redis: did not answer, see $data_dir/redis.log" >&2; return 1
}

stop() {
  if answers; then redis-cli -h 127.0.0.1 -p "$port" shutdown >/dev/null 2>&1 || true; fi
  for _ in $(seq 1 50); do answers || { echo "redis: stopped"; return 0; }; sleep 0.2; done
  echo "redis: still answering" >&2; return 1
}

status() { if answers; then echo "redis: running on 127.0.0.1:$port"; else echo "redis: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
