#!/usr/bin/env bash
# The test command of the README: installs what the tests need, lints with ruff
# (pyproject.toml's rules), then runs the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh" test
cd "$ROOT"
python -m ruff check --quiet .
exec python -m pytest -q "$@"
