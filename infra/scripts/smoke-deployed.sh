#!/usr/bin/env bash
# Smoke tests against a deployed environment: what the pipelines run after the staging deploy and
# before the production approval. Reads the deployment's outputs (names only), fetches the app's
# master key and the payment webhook secret with the Azure CLI, masks both in the pipeline log,
# hands them to `make smoke` through the environment (never printed, never on a command line) and
# runs the end-to-end scenarios (docs/SMOKE.md). A failed scenario exits non-zero: the rollout stops.
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

function_key=$(az functionapp keys list \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" \
  --query masterKey \
  --output tsv)
if [[ -z "$function_key" ]]; then
  echo "smoke: $AZURE_FUNCTION_APP_NAME returned no master key" >&2
  exit 1
fi
mask "$function_key"

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

storage=()
if [[ "${ORDERFLOW_SMOKE_IMPORT:-}" == "true" ]]; then
  storage=("STORAGE_ACCOUNT_URL=https://${AZURE_STORAGE_ACCOUNT_NAME}.blob.core.windows.net")
fi

echo "smoke: running the scenarios against $SERVICE_API_URI" >&2
FUNCTION_KEY="$function_key" WEBHOOK_SECRET="$webhook_secret" \
  make smoke BASE_URL="$SERVICE_API_URI" TIMEOUT="${SMOKE_TIMEOUT:-120}" "${storage[@]}"
