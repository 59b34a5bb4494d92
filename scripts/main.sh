#!/usr/bin/env bash
# The main-job command of the README: installs jaxirl, then runs the study on
# the embedded default. Extra arguments go to experiments/pipeline.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/venv.sh" base
cd "$ROOT"
exec python experiments/pipeline.py "$@"
