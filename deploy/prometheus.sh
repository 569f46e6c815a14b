#!/usr/bin/env bash
# Prometheus from Debian's package, on 127.0.0.1, scraping the gateway and the worker(s) and evaluating
# the alerting rules in deploy/prometheus/alerts.yml (runbook: docs/operations.md).
# Usage: deploy/prometheus.sh install|start|stop|status
#   PROMETHEUS_PORT (9090), PROMETHEUS_TARGETS ("127.0.0.1:8787,127.0.0.1:6066"), PROMETHEUS_DATA_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
data_dir=${PROMETHEUS_DATA_DIR:-$cache/prometheus}
port=${PROMETHEUS_PORT:-9090}
targets=${PROMETHEUS_TARGETS:-127.0.0.1:8787,127.0.0.1:6066}
interval=${PROMETHEUS_SCRAPE_INTERVAL:-5s}
pidfile="$data_dir/prometheus.pid"

install() {
  command -v prometheus >/dev/null && return 0
  echo "prometheus: installing Debian's prometheus package" >&2
  [ "$(id -u)" = 0 ] || { echo "prometheus: run as root or install the prometheus package" >&2; exit 1; }
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
}

answers() { curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1; }

start() {
  install
  if answers; then echo "prometheus: already running on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$data_dir/tsdb"
  quoted=$(echo "$targets" | sed 's/[^,][^,]*/"&"/g')
  sed -e "s|@TARGETS@|[$quoted]|" -e "s|@INTERVAL@|$interval|" "$here/prometheus/prometheus.yml" > "$data_dir/prometheus.yml"
  cp "$here/prometheus/alerts.yml" "$data_dir/alerts.yml"
  promtool check config "$data_dir/prometheus.yml" >&2
  nohup prometheus --config.file="$data_dir/prometheus.yml" --storage.tsdb.path="$data_dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$data_dir/prometheus.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do answers && { echo "prometheus: up on 127.0.0.1:$port"; return 0; }; sleep 0.2; done
  echo "prometheus: did not become ready, see $data_dir/prometheus.log" >&2; return 1
}

stop() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"; for _ in $(seq 1 50); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.2; done
    rm -f "$pidfile"; echo "prometheus: stopped"
  else echo "prometheus: not running"; fi
}

status() { if answers; then echo "prometheus: running on 127.0.0.1:$port"; else echo "prometheus: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
