#!/usr/bin/env bash
# kubo (IPFS) v0.38.2, built from the Go module proxy into ~/.cache/ingestflow, run strictly local:
# offline, empty bootstrap list, no MDNS/DHT/relay/NAT/AutoTLS/AutoConf, API, gateway and swarm on 127.0.0.1.
# It never dials an address outside loopback.
# Usage: deploy/kubo.sh install|start|stop|status    (KUBO_API_PORT, KUBO_GATEWAY_PORT, KUBO_SWARM_PORT,
#        KUBO_DATA_DIR move an instance to its own ports and repository, for tests that stop it)
set -euo pipefail
version=v0.38.2
cache=${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}
bin=$cache/kubo-$version/bin/ipfs
build_dir=$cache/kubo-build
api_port=${KUBO_API_PORT:-15001}
gateway_port=${KUBO_GATEWAY_PORT:-18080}
swarm_port=${KUBO_SWARM_PORT:-14001}
export IPFS_PATH=${KUBO_DATA_DIR:-$cache/kubo-$api_port}

install() {
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { echo "kubo: Go is required to build kubo $version" >&2; exit 1; }
  echo "kubo: building $version into $bin (a few minutes, once)" >&2
  mkdir -p "$build_dir" "$(dirname "$bin")"
  # A throwaway module pins kubo; `go install pkg@version` needs the proxy's version list, refused here.
  # cockroachdb/swiss (via pebble) is raised to a release that knows the installed Go's runtime.
  cat >"$build_dir/go.mod" <<EOF
module ingestflow.local/kubobuild

go 1.25

require github.com/ipfs/kubo $version

require github.com/cockroachdb/swiss v0.0.0-20260820225851-333444432258 // indirect
EOF
  (cd "$build_dir" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$bin.tmp" github.com/ipfs/kubo/cmd/ipfs)
  mv "$bin.tmp" "$bin"
}

answers() { curl -sf -X POST "http://127.0.0.1:$api_port/api/v0/id" >/dev/null 2>&1; }

configure() {
  if [ ! -f "$IPFS_PATH/config" ]; then
    mkdir -p "$IPFS_PATH"
    # The test profile: no bootstrap peers, MDNS off, listens on loopback only.
    "$bin" init --profile=test --empty-repo >/dev/null
  fi
  local c=("$bin" config)
  "${c[@]}" --json Bootstrap '[]'
  "${c[@]}" --json Peering.Peers '[]'
  "${c[@]}" Addresses.API "/ip4/127.0.0.1/tcp/$api_port"
  "${c[@]}" Addresses.Gateway "/ip4/127.0.0.1/tcp/$gateway_port"
  "${c[@]}" --json Addresses.Swarm "[\"/ip4/127.0.0.1/tcp/$swarm_port\"]"
  "${c[@]}" --json Addresses.Announce '[]'
  "${c[@]}" --json Addresses.NoAnnounce '["/ip4/0.0.0.0/ipcidr/0", "/ip6/::/ipcidr/0"]'
  "${c[@]}" --json Swarm.AddrFilters '["/ip4/0.0.0.0/ipcidr/0", "/ip6/::/ipcidr/0"]'
  "${c[@]}" --json Discovery.MDNS.Enabled false
  "${c[@]}" --json AutoConf.Enabled false
  "${c[@]}" --json AutoTLS.Enabled false
  "${c[@]}" --json Swarm.RelayClient.Enabled false
  "${c[@]}" --json Swarm.RelayService.Enabled false
  "${c[@]}" --json Swarm.DisableNatPortMap true
  "${c[@]}" --json Swarm.Transports.Network.Websocket false
  "${c[@]}" --json Swarm.Transports.Network.QUIC false
  "${c[@]}" --json Swarm.Transports.Network.WebTransport false
  "${c[@]}" --json Swarm.Transports.Network.WebRTCDirect false
  "${c[@]}" Routing.Type none
  "${c[@]}" --json Provide.Enabled false 2>/dev/null || true
}

start() {
  install
  if answers; then echo "kubo: already running on 127.0.0.1:$api_port"; return 0; fi
  configure
  nohup "$bin" daemon --offline >"$IPFS_PATH/daemon.log" 2>&1 &
  echo $! >"$IPFS_PATH/daemon.pid"
  for _ in $(seq 1 150); do
    answers && { echo "kubo: up on 127.0.0.1:$api_port (offline)"; return 0; }
    sleep 0.2
  done
  echo "kubo: did not answer, see $IPFS_PATH/daemon.log" >&2; return 1
}

stop() {
  local pid_file=$IPFS_PATH/daemon.pid
  if [ -f "$pid_file" ]; then
    local pid; pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pid_file"
  fi
  if answers; then echo "kubo: still answering on 127.0.0.1:$api_port" >&2; return 1; fi
  echo "kubo: stopped"
}

status() { if answers; then echo "kubo: running on 127.0.0.1:$api_port"; else echo "kubo: stopped"; return 3; fi; }

case "${1:-status}" in
  install) install ;; start) start ;; stop) stop ;; status) status ;;
  restart) stop; start ;;
  *) echo "usage: $0 install|start|stop|restart|status" >&2; exit 2 ;;
esac
