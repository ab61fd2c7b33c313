#!/usr/bin/env bash
# Creates .venv-infra (checkov, pinned in requirements-infra.txt) idempotently. checkov lives in
# its own virtual environment because its dependencies conflict with the test tools in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_venv313 .venv-infra
install_requirements .venv-infra requirements-infra.txt
