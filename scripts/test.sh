#!/usr/bin/env bash
# The test command of the README: installs what the tests need, then runs them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh" test
cd "$ROOT"
exec python -m pytest -q "$@"
