#!/usr/bin/env bash
# Creates (or reuses) the project virtualenv and installs jaxirl into it.
# Usage: source scripts/venv.sh [extra]   (extra: test)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${JAXIRL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
EXTRA="${1:-}"
STAMP="$VENV/.jaxirl-installed-${EXTRA:-base}"
# Reinstall only when the package metadata changed since the last install.
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.cfg" -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if [ "$EXTRA" = "test" ]; then
    # A CPU build of torch, before anything can ask for a CUDA one.
    "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  else
    "$VENV/bin/python" -m pip install -q -e "$ROOT"
  fi
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
