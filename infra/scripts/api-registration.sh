#!/usr/bin/env sh
# The azd preprovision hook: creates or updates the API's Entra ID application
# (infra/identity/api-registration.json, applied by infra/scripts/api_registration.py) and stores
# its client id in the azd environment, where infra/main.parameters.json reads it (apiAppId).
# A team whose administrators register the API themselves sets ORDERFLOW_API_REGISTRATION=manual
# and ORDERFLOW_API_APP_ID (azd env set ...); the hook then only checks that the id is there.
set -eu
cd "$(dirname "$0")/../.."

: "${AZURE_ENV_NAME:?set by azd}"
if [ "${ORDERFLOW_API_REGISTRATION:-}" = "manual" ]; then
  : "${ORDERFLOW_API_APP_ID:?ORDERFLOW_API_REGISTRATION=manual needs ORDERFLOW_API_APP_ID (azd env set)}"
  echo "api-registration: using the existing application $ORDERFLOW_API_APP_ID" >&2
  exit 0
fi
outputs=$(python3 infra/scripts/api_registration.py --environment "$AZURE_ENV_NAME")
for line in $outputs; do
  azd env set "${line%%=*}" "${line#*=}"
done
echo "api-registration: $outputs" >&2
