#!/usr/bin/env sh
# Connects Event Grid to the deployed functions (infra/event-subscriptions.bicep). Runs after the
# code is deployed: as the azd postdeploy hook, and as the last step of infra/scripts/deploy.sh.
# Idempotent. A subscription whose function is not in the deployed app yet is skipped with a
# warning, so a deployment of an app version without that function still succeeds.
#
# Needs the Azure CLI, signed in, and these variables (azd exports them from main.bicep's outputs):
#   AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_STORAGE_ACCOUNT_NAME
#   EVENTGRID_TOPIC_NAME EVENTGRID_DEAD_LETTER_CONTAINER
# Blob uploads reach the imports through a storage queue declared in main.bicep
# (modules/import-events.bicep): nothing to connect after the deployment for them.
set -eu
cd "$(dirname "$0")/../.."

: "${AZURE_RESOURCE_GROUP:?set by main.bicep outputs}"
: "${AZURE_FUNCTION_APP_NAME:?set by main.bicep outputs}"
: "${AZURE_STORAGE_ACCOUNT_NAME:?set by main.bicep outputs}"
: "${EVENTGRID_TOPIC_NAME:?set by main.bicep outputs}"
DEAD_LETTER_CONTAINER="${EVENTGRID_DEAD_LETTER_CONTAINER:-eventgrid-deadletters}"
ROUTER=route_order_events
ATTEMPTS="${EVENT_SUBSCRIPTION_ATTEMPTS:-20}"

has_function() {
  az functionapp function show --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name "$1" --output none 2>/dev/null
}

# After a deployment the host needs a moment to index the functions.
wait_for() {
  i=0
  while [ "$i" -lt "$ATTEMPTS" ]; do
    if "$@"; then return 0; fi
    i=$((i + 1))
    sleep 15
  done
  return 1
}

wait_for has_function "$ROUTER" || true
if ! has_function "$ROUTER"; then
  echo "event-subscriptions: $ROUTER is not deployed yet; skipping the order-events subscription" >&2
  exit 0
fi

az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "orderflow-event-subscriptions" \
  --template-file infra/event-subscriptions.bicep \
  --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    topicName="$EVENTGRID_TOPIC_NAME" \
    storageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
    deadLetterContainerName="$DEAD_LETTER_CONTAINER" \
    connectOrderEvents=true \
  --output none
echo "event-subscriptions: order events -> $ROUTER"
