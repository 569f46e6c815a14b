#!/usr/bin/env bash
# Installs (when missing) and starts or stops every service the stack needs, all on 127.0.0.1.
# Usage: deploy/services.sh start|stop|status
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
action=${1:-status}
services="postgres redis kafka"
[ "$action" = stop ] && services="kafka redis postgres"
rc=0
for s in $services; do "$here/$s.sh" "$action" || rc=$?; done
exit $rc
