#!/usr/bin/env bash
# Creates (or reuses) the project virtualenv and installs jaxirl into it.
# Usage: source scripts/venv.sh base|test   (always name one: a bare `source` would read
# the calling script's own arguments as the extra)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${JAXIRL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
EXTRA="${1:-base}"
if [ "$EXTRA" != "base" ] && [ "$EXTRA" != "test" ]; then
  echo "error: scripts/venv.sh takes 'base' or 'test', got '$EXTRA'" >&2
  exit 2
fi
[ "$EXTRA" = "base" ] && EXTRA=""
STAMP="$VENV/.jaxirl-installed-${EXTRA:-base}"
# Reinstall only when the package metadata changed since the last install.
pip_install() {
  # pip's log goes to a file and is shown only when the install fails.
  if ! "$VENV/bin/python" -m pip install -q "$@" >"$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log" >&2
    echo "error: pip install $* failed (log: $VENV/pip.log)" >&2
    exit 1
  fi
}
if [ ! -f "$STAMP" ] || [ "$ROOT/setup.cfg" -nt "$STAMP" ]; then
  echo "installing jaxirl${EXTRA:+[$EXTRA]} into $VENV ..." >&2
  pip_install --upgrade pip
  if [ "$EXTRA" = "test" ]; then
    # torch for the PyTorch parity tests, pinned before anything can ask for a newer one:
    # pip takes the CPU build of 2.13.0 where its find-links hold it (the CI machines);
    # from PyPI alone, Linux gets the CUDA build (larger, and it runs on the CPU too).
    pip_install "torch==2.13.0"
    pip_install -e "$ROOT[test]"
  else
    pip_install -e "$ROOT"
  fi
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
