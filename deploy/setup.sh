#!/usr/bin/env bash
# Installs the Python package (editable, with test tools) when it is missing or pyproject.toml changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
stamp="${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}/pip-$(sha1sum "$root/pyproject.toml" | cut -c1-12)-$(echo "$root" | sha1sum | cut -c1-8)"
if [ ! -f "$stamp" ] || ! "$python" -c "import ingestflow.app" 2>/dev/null; then
  "$python" -m pip install -q --disable-pip-version-check -e "$root[test]"
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
