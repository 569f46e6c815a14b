#!/usr/bin/env bash
# mypy --strict ([tool.mypy] in pyproject.toml) over the ingestflow packages, then the benchmarks (bench/).
# The folders install as ingestflow.app, ingestflow.agents, ... through setuptools' package-dir mapping, so mypy reads them through
# a temporary ingestflow/ tree of symlinks to this repository's folders. Extra arguments go to mypy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/ingestflow"
touch "$tree/ingestflow/__init__.py"
for pkg in app agents tables schemas; do
  ln -s "$root/$pkg" "$tree/ingestflow/$pkg"
done
cd "$tree"
mypy=("$root/.venv/bin/python" -m mypy --config-file "$root/pyproject.toml" "$@")
"${mypy[@]}" -p ingestflow
# The benchmarks are scripts (each imports its neighbour bench/services.py), checked as files.
"${mypy[@]}" "$root"/bench/*.py
