#!/usr/bin/env bash
# Smoke tests against a deployed environment: what the pipelines run after the staging deploy and
# before the production approval. Reads the deployment's outputs (names only), fetches the payment
# webhook secret with the Azure CLI and a token for the API as the signed-in identity, masks both
# in the pipeline log, hands them to `make smoke` through the environment (never printed, never on
# a command line) and runs the end-to-end scenarios (docs/SMOKE.md). No Functions key is read:
# every route is anonymous to the host and checks its bearer token itself, so the pipeline needs no
# right to list the app's keys. A failed scenario exits non-zero: the rollout stops.
#
# Needs: az (signed in, subscription selected), python3, make, and
#   AZURE_ENV_NAME     the environment infra/scripts/deploy.sh deployed, e.g. orderflow-prod-staging
# Optional:
#   ORDERFLOW_SMOKE_IMPORT=true   also run the import scenario (the signed-in identity needs Storage
#                                 Blob Data Contributor on the environment's storage account)
#   SMOKE_TIMEOUT                 seconds to wait for fulfilment and imports (default 120: the first
#                                 run after a deploy meets cold instances)
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (the deployed environment to test)}"
deployment="orderflow-${AZURE_ENV_NAME}"

mask() {
  # Registers a secret with the pipeline, which then hides it wherever it would appear in the log.
  if [[ "${GITHUB_ACTIONS:-}" == "true" ]]; then
    echo "::add-mask::$1"
  elif [[ -n "${TF_BUILD:-}" ]]; then
    echo "##vso[task.setsecret]$1"
  fi
}

outputs=$(az deployment sub show --name "$deployment" --query properties.outputs --output json)
eval "$(python3 -c '
import json, shlex, sys
for name, output in json.load(sys.stdin).items():
    print(f"export {name}={shlex.quote(str(output[\"value\"]))}")
' <<<"$outputs")"

if ! webhook_secret=$(az keyvault secret show \
  --vault-name "$AZURE_KEY_VAULT_NAME" \
  --name payment-webhook-secret \
  --query value \
  --output tsv); then
  echo "smoke: cannot read payment-webhook-secret from $AZURE_KEY_VAULT_NAME: set it once and give" \
    "this identity a Key Vault role on the vault (docs/DEPLOY.md)" >&2
  exit 1
fi
mask "$webhook_secret"

# A token for the API, as the signed-in identity (the pipeline's service principal: its app role
# assignments on the API become the token's roles, docs/DEPLOY.md). The scenarios then check that
# an anonymous call to a protected route gets 401 and an authorised one 200.
if ! api_token=$(az account get-access-token \
  --scope "${ORDERFLOW_API_IDENTIFIER_URI}/.default" \
  --query accessToken \
  --output tsv); then
  echo "smoke: no token for ${ORDERFLOW_API_IDENTIFIER_URI}: grant this identity the API's app roles" \
    "(docs/DEPLOY.md)" >&2
  exit 1
fi
mask "$api_token"

# With the gateway, every call goes through it (the function app accepts only its addresses) and
# the limit is checked too: a bounded loop must meet a 429 with Retry-After.
base_url="$SERVICE_API_URI"
rate_limit=()
if [[ -n "${ORDERFLOW_GATEWAY_URL:-}" ]]; then
  base_url="$ORDERFLOW_GATEWAY_URL"
  rate_limit=("RATE_LIMIT_CALLS=${ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS}")
fi

storage=()
if [[ "${ORDERFLOW_SMOKE_IMPORT:-}" == "true" ]]; then
  storage=("STORAGE_ACCOUNT_URL=https://${AZURE_STORAGE_ACCOUNT_NAME}.blob.core.windows.net")
fi

echo "smoke: running the scenarios against $base_url" >&2
SMOKE_TOKEN="$api_token" WEBHOOK_SECRET="$webhook_secret" \
  make smoke BASE_URL="$base_url" TIMEOUT="${SMOKE_TIMEOUT:-120}" "${storage[@]}" "${rate_limit[@]}"
