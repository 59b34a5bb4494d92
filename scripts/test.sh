#!/usr/bin/env bash
# The test command of the README: installs what the tests need, lints with ruff
# (pyproject.toml's rules), then runs the tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh" test
cd "$ROOT"
python -m ruff check --quiet .
# One worker per core, files in conftest.py's order (longest first); a file's tests stay
# on one worker, so its module fixtures (the bad-input launcher runs, the smoke study)
# run once.
exec python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder "$@"
