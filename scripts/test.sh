#!/usr/bin/env bash
# Every check the project has: lint, format, types, then all tests (unit, integration, end-to-end).
# Expects scripts/bootstrap.sh to have run (`make test` does both).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

echo "== ruff check" && "$PY" -m ruff check .
echo "== ruff format --check" && "$PY" -m ruff format --check .
echo "== mypy" && "$PY" -m mypy
[[ "${1:-}" == "--lint-only" ]] && exit 0
echo "== pytest"
exec "$PY" -m pytest "$@"
