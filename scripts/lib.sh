# Shell helpers shared by the bootstrap scripts (sourced, not run).

# Prints the path of a Python 3.13 interpreter ($PYTHON first), or fails.
find_python313() {
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

# Creates (or recreates) a Python 3.13 virtual environment at $1 unless a good one exists.
ensure_venv313() {
  local venv=$1 python
  if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
    return 0
  fi
  python=$(find_python313) || {
    echo "bootstrap: Python 3.13 not found. Install it (for example 'pyenv install 3.13') or set PYTHON=/path/to/python3.13" >&2
    return 1
  }
  echo "bootstrap: creating $venv with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
}

# Installs requirement file(s) into venv $1 when their content changed since the last install.
install_requirements() {
  local venv=$1 stamp want
  shift
  stamp="$venv/.requirements.sha256"
  want=$(cat "$@" | sha256sum | cut -d' ' -f1)
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "bootstrap: installing $* into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $(printf -- '-r %s ' "$@")
    echo "$want" >"$stamp"
  fi
}
