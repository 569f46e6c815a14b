#!/usr/bin/env bash
# Creates the project's virtual environment (.venv, with Debian's own Python by default) and installs the
# package into it, editable, when it is missing or pyproject.toml changed. Debian marks its Python as
# externally managed (PEP 668), so nothing is ever installed into the system's Python.
# Usage: deploy/setup.sh [extra ...]   e.g. `deploy/setup.sh test` (tests), `deploy/setup.sh bench`.
# PYTHON picks another interpreter (3.11 or newer) to build the environment from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ -n "${PYTHON:-}" ]; then base=$PYTHON
elif [ -x /usr/bin/python3 ]; then base=/usr/bin/python3
else base=python3; fi

if [ ! -x "$venv/bin/python" ]; then
  if ! "$base" -c "import ensurepip, venv" 2>/dev/null; then
    # Debian ships venv's pip bootstrap apart, in python3-venv.
    [ "$(id -u)" = 0 ] || { echo "setup: install Debian's python3-venv package (apt-get install python3-venv)" >&2; exit 1; }
    echo "setup: installing Debian's python3-venv package" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
  fi
  echo "setup: creating $venv with $("$base" --version 2>&1)" >&2
  "$base" -m venv "$venv"
fi

extras=$(IFS=,; echo "$*")
spec="$root"
[ -n "$extras" ] && spec="$root[$extras]"
stamp="$venv/.installed-$(cat "$root/pyproject.toml" | sha1sum | cut -c1-12)-${extras:-runtime}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing ingestflow${extras:+ with [$extras]} into $venv (a minute or two, once)" >&2
  log="$venv/pip-install.log"
  # pip's and setuptools' chatter goes to a log, shown only when the install fails.
  if ! { "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
         && "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"; } >"$log" 2>&1; then
    cat "$log" >&2; echo "setup: pip install failed (log: $log)" >&2; exit 1
  fi
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
