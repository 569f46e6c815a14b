#!/usr/bin/env bash
# The whole test suite: mypy --strict (deploy/typecheck.sh), then unit tests and integration tests against
# the real Kafka, PostgreSQL, Redis and kubo (the suite starts the services it finds stopped). Extra
# arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/deploy/setup.sh" test bench   # bench: the suite runs every bench in a smoke mode
"$root/deploy/typecheck.sh"
"$root/deploy/services.sh" start
exec "$root/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
