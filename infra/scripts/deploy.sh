#!/usr/bin/env bash
# Provision, deploy the code and connect Event Grid with the Azure CLI alone: what the GitHub
# Actions and Azure DevOps pipelines run after signing in with federated credentials. (`azd up`
# does the same through azure.yaml.) Idempotent.
#
# Needs: az (signed in, subscription selected), python3, and
#   AZURE_ENV_NAME     environment name, e.g. orderflow-prod (names the resource group rg-<name>)
#   AZURE_LOCATION     region offering Flex Consumption, e.g. swedencentral
# Optional:
#   ORDERFLOW_OPERATOR_PRINCIPAL_ID / _TYPE   person or group that may set Key Vault secrets
#   ORDERFLOW_ALERT_EMAIL                     receives alerts and budget notifications
#   ORDERFLOW_MONTHLY_BUDGET                  monthly cost budget of the resource group (100)
#   ORDERFLOW_BUDGET_START_DATE               budget start (yyyy-MM-01); default: kept from the
#                                             last deployment, since Azure cannot change it
#   ORDERFLOW_API_APP_ID                      client id of an API application registered by an
#                                             administrator; empty: infra/scripts/api_registration.py
#                                             creates or updates orderflow-api-<AZURE_ENV_NAME>
#   ORDERFLOW_EASY_AUTH_ENABLED               Easy Auth in front of the app (true)
#   ORDERFLOW_API_GATEWAY_SKU                 None (default) or an API Management tier, e.g. Basic
#   ORDERFLOW_GATEWAY_PUBLISHER_EMAIL         required with a gateway: its notification address
#   ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS / ORDERFLOW_GATEWAY_QUOTA_CALLS   per-caller limits
#   ORDERFLOW_VNET_ENABLED                    private network for the data services (false)
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${AZURE_ENV_NAME:?set AZURE_ENV_NAME (for example orderflow-prod)}"
: "${AZURE_LOCATION:?set AZURE_LOCATION (a region with Flex Consumption)}"
deployment="orderflow-${AZURE_ENV_NAME}"

# A budget's start date cannot change once the budget exists: reuse the one the last deployment
# used (empty on the first deployment, which starts the budget this month).
budget_start="${ORDERFLOW_BUDGET_START_DATE:-$(az deployment sub show --name "$deployment" \
  --query properties.outputs.ORDERFLOW_BUDGET_START_DATE.value --output tsv 2>/dev/null || true)}"

# The API's Entra ID application first: its client id is the token audience of the app, Easy Auth
# and the gateway (docs/SECURITY.md).
api_app_id="${ORDERFLOW_API_APP_ID:-}"
if [[ -z "$api_app_id" ]]; then
  registration=$(python3 infra/scripts/api_registration.py --environment "$AZURE_ENV_NAME")
  api_app_id=$(sed -n 's/^ORDERFLOW_API_APP_ID=//p' <<<"$registration")
fi
echo "deploy: API application $api_app_id" >&2

echo "deploy: provisioning infra/main.bicep as deployment $deployment" >&2
az deployment sub create \
  --name "$deployment" \
  --location "$AZURE_LOCATION" \
  --template-file infra/main.bicep \
  --parameters \
    environmentName="$AZURE_ENV_NAME" \
    location="$AZURE_LOCATION" \
    operatorPrincipalId="${ORDERFLOW_OPERATOR_PRINCIPAL_ID:-}" \
    operatorPrincipalType="${ORDERFLOW_OPERATOR_PRINCIPAL_TYPE:-Group}" \
    alertEmailAddress="${ORDERFLOW_ALERT_EMAIL:-}" \
    monthlyBudgetAmount="${ORDERFLOW_MONTHLY_BUDGET:-100}" \
    budgetStartDate="$budget_start" \
    apiAppId="$api_app_id" \
    easyAuthEnabled="${ORDERFLOW_EASY_AUTH_ENABLED:-true}" \
    apiGatewaySku="${ORDERFLOW_API_GATEWAY_SKU:-None}" \
    gatewayPublisherEmail="${ORDERFLOW_GATEWAY_PUBLISHER_EMAIL:-}" \
    gatewayRateLimitCalls="${ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS:-100}" \
    gatewayQuotaCalls="${ORDERFLOW_GATEWAY_QUOTA_CALLS:-100000}" \
    vnetEnabled="${ORDERFLOW_VNET_ENABLED:-false}" \
  --output none

# The deployment's outputs (names and endpoints only) become environment variables, as azd does.
outputs=$(az deployment sub show --name "$deployment" --query properties.outputs --output json)
eval "$(python3 -c '
import json, shlex, sys
for name, output in json.load(sys.stdin).items():
    print(f"export {name}={shlex.quote(str(output[\"value\"]))}")
' <<<"$outputs")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 infra/scripts/package_app.py "$work/orderflow.zip"
echo "deploy: deploying the code to $AZURE_FUNCTION_APP_NAME (remote build)" >&2
az functionapp deployment source config-zip \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" \
  --src "$work/orderflow.zip" \
  --build-remote true \
  --output none

infra/scripts/event-subscriptions.sh
echo "deploy: done: $SERVICE_API_URI" >&2
