#!/usr/bin/env bash
# The project's test command (README, CI): set everything up, then run the whole suite.
# Extra arguments go to pytest, e.g. ./scripts/test.sh -k normalize
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "${PTBR_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
