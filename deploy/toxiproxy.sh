#!/usr/bin/env bash
# Toxiproxy (github.com/Shopify/toxiproxy/v2) v2.12.0, built from the Go module proxy into ~/.cache/ingestflow,
# listening on 127.0.0.1 only. The test suite puts it between a client and a service to inject network faults
# (latency, small segments, bandwidth limits, resets, silence) through its HTTP API.
# Usage: deploy/toxiproxy.sh install|start|stop|status    (TOXIPROXY_PORT, default 8474, moves the API to
#        another port; TOXIPROXY_DATA_DIR holds its pid file and log)
set -euo pipefail
version=v2.12.0
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
bin=$cache/toxiproxy-$version/bin/toxiproxy-server
build_dir=$cache/toxiproxy-build
port=${TOXIPROXY_PORT:-8474}
data_dir=${TOXIPROXY_DATA_DIR:-$cache/toxiproxy-$port}
pidfile=$data_dir/toxiproxy.pid
log=$data_dir/toxiproxy.log

install() {
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { echo "toxiproxy: Go is required to build toxiproxy $version" >&2; exit 1; }
  echo "toxiproxy: building $version into $bin (once)" >&2
  mkdir -p "$build_dir" "$(dirname "$bin")"
  # A throwaway module pins the version; `go install pkg@version` needs the proxy's version list.
  cat >"$build_dir/go.mod" <<EOF
module ingestflow.local/toxiproxybuild

go 1.23

require github.com/Shopify/toxiproxy/v2 $version
EOF
  (cd "$build_dir" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$bin.tmp" github.com/Shopify/toxiproxy/v2/cmd/server)
  mv "$bin.tmp" "$bin"
}

answers() { curl -sf "http://127.0.0.1:$port/version" >/dev/null 2>&1; }

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

start() {
  install
  if answers; then echo "toxiproxy: already running on 127.0.0.1:$port"; return 0; fi
  mkdir -p "$data_dir"
  LOG_LEVEL=${TOXIPROXY_LOG_LEVEL:-warn} nohup "$bin" -host 127.0.0.1 -port "$port" >"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    answers && { echo "toxiproxy: up on 127.0.0.1:$port"; return 0; }
    running || { echo "toxiproxy: exited during start-up, see $log" >&2; tail -20 "$log" >&2; return 1; }
    sleep 0.2
  done
  echo "toxiproxy: did not answer, see $log" >&2; return 1
}

stop() {
  running || { echo "toxiproxy: not running"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
  echo "toxiproxy: stopped"
}

status() { if answers; then echo "toxiproxy: running on 127.0.0.1:$port"; else echo "toxiproxy: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
