#!/usr/bin/env bash
# Sets up everything Orderflow needs on a fresh machine, idempotently:
# a Python 3.13 virtual environment with the pinned packages, and the local stand-ins (npm).
#   --with-browser  also headless Chromium and its WebDriver, which only the browser test of the
#                   API reference needs (`make test` passes it; `make run` stays light)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

VENV=.venv
NODE_MAJOR_MIN=18
WITH_BROWSER=0
for arg in "$@"; do
  case $arg in
    --with-browser) WITH_BROWSER=1 ;;
    *) echo "usage: scripts/bootstrap.sh [--with-browser]" >&2; exit 2 ;;
  esac
done

apt_install() {
  echo "bootstrap: installing $* with apt-get" >&2
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$@"
}

ensure_apt_packages() {
  # Debian packages the stack needs if the machine lacks them (Node for Azurite and Cosmos).
  local missing=()
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if ((${#missing[@]})); then
    apt_install "${missing[@]}"
  fi
}

ensure_browser() {
  # Debian's chromium and chromium-driver (same build, so the driver always fits the browser);
  # nothing is downloaded at test time. A machine that already has a Chromium-based browser and
  # a chromedriver (CI images often do) keeps them; tests/e2e/browser.py finds either.
  if command -v chromedriver >/dev/null 2>&1 \
    && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
      || command -v google-chrome >/dev/null 2>&1; }; then
    return 0
  fi
  apt_install chromium chromium-driver
}

ensure_venv313 "$VENV"
# requirements-dev.txt includes requirements.txt; both are hashed so either change reinstalls.
install_requirements "$VENV" requirements.txt requirements-dev.txt

# checkov conflicts with the test tools' pins, so it gets a virtual environment of its own.
scripts/bootstrap-infra.sh

ensure_apt_packages
((WITH_BROWSER)) && ensure_browser
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < NODE_MAJOR_MIN)); then
  echo "bootstrap: Node $node_major is too old for the local stand-ins (need >= $NODE_MAJOR_MIN)" >&2
  exit 1
fi
nstamp=localdev/node_modules/.package-lock.sha256
nwant=$(sha256sum localdev/package-lock.json | cut -d' ' -f1)
if [[ ! -f "$nstamp" || "$(cat "$nstamp")" != "$nwant" ]]; then
  echo "bootstrap: installing the local stand-ins (npm ci)" >&2
  npm ci --prefix localdev --no-audit --no-fund --loglevel=error
  echo "$nwant" >"$nstamp"
fi

if [[ ! -f local.settings.json ]]; then
  cp local.settings.json.sample local.settings.json
  echo "bootstrap: created local.settings.json from the sample" >&2
fi
