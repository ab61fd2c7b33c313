#!/usr/bin/env bash
# Creates .venv-infra (checkov, pinned in requirements-infra.txt) idempotently. checkov lives in
# its own virtual environment because its dependencies conflict with the test tools in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-infra

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 "$HOME/.pyenv/versions/3.13"*/bin/python3 /root/.pyenv/versions/3.13*/bin/python3 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
  PY=$(find_python) || {
    echo "bootstrap-infra: Python 3.13 not found. Install it or set PYTHON=/path/to/python3.13" >&2
    exit 1
  }
  echo "bootstrap-infra: creating $VENV with $PY" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

# Reinstall only when requirements-infra.txt changed since the last successful install.
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements-infra.txt | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "bootstrap-infra: installing checkov" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
  echo "$want" >"$stamp"
fi
