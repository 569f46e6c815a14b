#!/usr/bin/env bash
# Installs the Python package (editable, with test tools) when it is missing or pyproject.toml changed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
stamp="${INGESTFLOW_CACHE:-$HOME/.cache/ingestflow}/pip-$(sha1sum "$root/pyproject.toml" | cut -c1-12)-$(echo "$root" | sha1sum | cut -c1-8)"
# The editable install must point at *this* checkout (another clone may have installed it before).
installed_here() {
  "$python" -c "import ingestflow.app, os, sys; sys.exit(os.path.realpath(ingestflow.app.__path__[0]) != os.path.realpath(sys.argv[1]))" "$root/app" 2>/dev/null
}
if [ ! -f "$stamp" ] || ! installed_here; then
  "$python" -m pip install -q --disable-pip-version-check -e "$root[test]"
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi
