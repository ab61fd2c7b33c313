// The function app on the Flex Consumption plan (Linux, Python 3.13) with its user-assigned
// identity, the deployment container, and every app setting the app reads (shared/config.py).
// Connections are identity-based (`<Connection>__<property>` plus `__credential` and
// `__clientId`); no setting holds a key, a connection string with a key, or a secret.

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('azd service name (azure.yaml) the app is tagged with, so `azd deploy` finds it.')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Storage account for the host, the deployment package and the app data.')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Application Insights component (local auth disabled).')
param applicationInsightsName string

@description('Log Analytics workspace that receives the function logs.')
param logAnalyticsWorkspaceId string

@description('Cosmos DB account endpoint (COSMOS_ENDPOINT).')
param cosmosEndpoint string

@description('Cosmos DB database (COSMOS_DATABASE).')
param cosmosDatabaseName string

@description('Service Bus namespace host name, `<name>.servicebus.windows.net`.')
param serviceBusFullyQualifiedNamespace string

@description('Service Bus queue for fulfillment commands (FULFILLMENT_QUEUE).')
param fulfillmentQueueName string

@description('Full publish URL of the custom topic, ending in /api/events (EVENTGRID_TOPIC_ENDPOINT).')
param eventGridTopicEndpoint string

@description('Key Vault URI (KEY_VAULT_URL).')
param keyVaultUri string

@description('Claim that names the customer in delegated tokens (AUTH_CUSTOMER_CLAIM): `sub`, or `oid` for the user\'s object id (docs/SECURITY.md).')
param authCustomerClaim string = 'sub'

@description('Always-ready instances, for example [{ name: \'http\', instanceCount: 1 }]; empty scales to zero.')
param alwaysReady array = []

@description('Upper bound of instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Issuer of the bearer tokens the API accepts (AUTH_ISSUER), `<login endpoint><tenant>/v2.0` for Entra ID.')
param authIssuer string

@description('Client id of the API\'s Entra ID application (infra/identity/api-registration.json): the `aud` of its v2 access tokens (AUTH_AUDIENCE).')
param authAudience string

@description('Identifier URI of the API application (`api://<client id>`); Easy Auth accepts it as an audience too.')
param apiIdentifierUri string = ''

@description('Easy Auth (App Service authentication) in front of the code: a request to a protected route without a valid token for the API gets 401 before any code runs. The app validates every token itself as well.')
param easyAuthEnabled bool = false

@description('Client id the API reference (/api/docs) signs in as with authorization code and PKCE (API_DOCS_CLIENT_ID): a single-page-application registration whose redirect URI is https://<host>/api/docs/oauth2-redirect.html. Empty: the reader types one in the Authorize dialog.')
param apiDocsClientId string = ''

@description('Scopes the API reference ticks at first in its Authorize dialog, by their OpenAPI names, space-separated (API_DOCS_SCOPES).')
param apiDocsScopes string = 'Orders.ReadWrite'

@description('Client ids of the applications Easy Auth lets call (the `azp`/`appid` of their tokens); empty: any application with a token for the API, the app\'s own roles and scopes decide.')
param allowedClientApplications array = []

@description('Addresses allowed to call the app directly: the gateway\'s static outbound addresses. Empty: no address restriction. When set, Event Grid (service tag AzureEventGrid) is allowed too, and everything else gets 403.')
param allowedInboundAddresses array = []

@description('Subnet the app integrates into (main.bicep vnetEnabled): its outbound traffic then goes through the VNet, where the data services\' private endpoints resolve. Empty: no VNet integration.')
param virtualNetworkSubnetId string = ''

@description('Minutes before an unpaid order expires (PAYMENT_TIMEOUT_MINUTES).')
param paymentTimeoutMinutes int = 30

@description('Seconds a Key Vault secret is cached (SECRET_CACHE_TTL_SECONDS).')
param secretCacheTtlSeconds int = 300

@description('Deadline of each readiness probe (HEALTH_PROBE_TIMEOUT_SECONDS).')
param healthProbeTimeoutSeconds int = 2

@description('Level of the Azure SDKs\' own loggers (SDK_LOG_LEVEL): WARNING keeps their per-request and AMQP state records out of billed ingestion; DEBUG or INFO while diagnosing.')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param sdkLogLevel string = 'WARNING'

@description('Total deadline of each HTTP invocation, seconds (HTTP_DEADLINE_SECONDS); below the callers\' own timeouts.')
@minValue(1)
@maxValue(120)
param httpDeadlineSeconds int = 8

@description('Share of the worker\'s threads that calls to one dependency may hold at once (BULKHEAD_THREAD_SHARE, a decimal in (0, 1]; docs/RELIABILITY.md).')
param bulkheadThreadShare string = '0.67'

@description('NCRONTAB schedule of expire_unpaid_orders (6 fields, seconds first).')
param expireUnpaidOrdersSchedule string = '0 */5 * * * *'

@description('NCRONTAB schedule of daily_sales_report (UTC).')
param dailySalesReportSchedule string = '0 30 1 * * *'

@description('NCRONTAB schedule of dead_letter_watch.')
param deadLetterWatchSchedule string = '0 */15 * * * *'

@description('NCRONTAB schedule of publish_pending_events (the outbox relay).')
param outboxRelaySchedule string = '30 * * * * *'

@description('NCRONTAB schedule of reconcile_imports (uploads whose event never came, file passes that died).')
param importReconcileSchedule string = '15 */5 * * * *'

@description('Seconds an upload may wait for its event before the reconciliation starts it (IMPORT_RECONCILE_GRACE_SECONDS).')
@minValue(0)
param importReconcileGraceSeconds int = 300

@description('Seconds after which an unfinished file pass counts as dead (IMPORT_STUCK_SECONDS); above host.json functionTimeout.')
@minValue(60)
param importStuckSeconds int = 900

// Access restrictions when the gateway stands in front (docs/SECURITY.md): its addresses, and
// Event Grid, which delivers order events to the runtime webhook.
var restrictInbound = !empty(allowedInboundAddresses)
var gatewayRules = [
  for (address, i) in allowedInboundAddresses: {
    name: 'gateway-${i}'
    action: 'Allow'
    priority: 100 + i
    ipAddress: '${address}/32'
  }
]
var eventGridRules = [
  {
    name: 'event-grid'
    action: 'Allow'
    priority: 300
    tag: 'ServiceTag'
    ipAddress: 'AzureEventGrid'
  }
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: Flex Consumption plans have no zone-redundancy setting of their own here (zone redundancy is a regional Flex option outside this template)
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_16: authentication is the separate authsettingsV2 resource below (authSettings, parameter easyAuthEnabled), which checkov does not relate to the site; the app validates bearer tokens itself as well
    // checkov:skip=CKV_AZURE_17: callers authenticate with Entra ID bearer tokens (the payment webhook with its HMAC signature), not client certificates
    // checkov:skip=CKV_AZURE_222: the HTTP API is public by design (shops, partners, the payment provider and Event Grid call it, or the gateway in front); VNet integration (vnetEnabled) carries the app's outbound traffic
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales per function group; a floor of instances is the alwaysReady parameter
    // checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; readiness is GET /api/health/ready
    serverFarmId: plan.id
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      ipSecurityRestrictionsDefaultAction: restrictInbound ? 'Deny' : 'Allow'
      ipSecurityRestrictions: restrictInbound ? concat(gatewayRules, eventGridRules) : []
      // Deployments (Entra ID only: basic publishing credentials are off) keep their own endpoint.
      scmIpSecurityRestrictionsUseMain: false
      cors: {
        allowedOrigins: []
      }
      // Every setting the app and its host read. The contract tests in tests/infra check that each
      // `shared.config.Settings` alias and each binding connection has its identity-based form here.
      appSettings: [
        // The host's own storage, through the identity.
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Telemetry: the connection string carries no secret once local auth is disabled; ingestion
        // is authorised by the identity (Monitoring Metrics Publisher).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        {
          name: 'ORDERFLOW_ENVIRONMENT'
          value: 'azure'
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        {
          name: 'COSMOS_ENDPOINT'
          value: cosmosEndpoint
        }
        {
          name: 'COSMOS_DATABASE'
          value: cosmosDatabaseName
        }
        // Binding connection ImportsStorage (blob and queue triggers) and the app's storage clients.
        {
          name: 'ImportsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'ImportsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'ImportsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'ImportsStorage__clientId'
          value: identityClientId
        }
        // Binding connection ServiceBusConnection (fulfillment trigger) and the app's sender.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusFullyQualifiedNamespace
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: identityClientId
        }
        {
          name: 'FULFILLMENT_QUEUE'
          value: fulfillmentQueueName
        }
        {
          name: 'EVENTGRID_TOPIC_ENDPOINT'
          value: eventGridTopicEndpoint
        }
        {
          name: 'KEY_VAULT_URL'
          value: keyVaultUri
        }
        {
          name: 'SECRET_CACHE_TTL_SECONDS'
          value: string(secretCacheTtlSeconds)
        }
        {
          name: 'PAYMENT_TIMEOUT_MINUTES'
          value: string(paymentTimeoutMinutes)
        }
        {
          name: 'HEALTH_PROBE_TIMEOUT_SECONDS'
          value: string(healthProbeTimeoutSeconds)
        }
        {
          name: 'SDK_LOG_LEVEL'
          value: sdkLogLevel
        }
        // The API reference's Authorize dialog (docs/API_REFERENCE.md): public values.
        {
          name: 'API_DOCS_CLIENT_ID'
          value: apiDocsClientId
        }
        {
          name: 'API_DOCS_SCOPES'
          value: apiDocsScopes
        }
        // Bearer tokens (docs/SECURITY.md): the API's Entra ID application.
        {
          name: 'AUTH_ISSUER'
          value: authIssuer
        }
        {
          name: 'AUTH_AUDIENCE'
          value: authAudience
        }
        {
          name: 'HTTP_DEADLINE_SECONDS'
          value: string(httpDeadlineSeconds)
        }
        {
          name: 'BULKHEAD_THREAD_SHARE'
          value: bulkheadThreadShare
        }
        {
          name: 'AUTH_CUSTOMER_CLAIM'
          value: authCustomerClaim
        }
        // Timer schedules: the host resolves %NAME% from app settings only.
        {
          name: 'EXPIRE_UNPAID_ORDERS_SCHEDULE'
          value: expireUnpaidOrdersSchedule
        }
        {
          name: 'DAILY_SALES_REPORT_SCHEDULE'
          value: dailySalesReportSchedule
        }
        {
          name: 'DEAD_LETTER_WATCH_SCHEDULE'
          value: deadLetterWatchSchedule
        }
        {
          name: 'OUTBOX_RELAY_SCHEDULE'
          value: outboxRelaySchedule
        }
        {
          name: 'IMPORT_RECONCILE_SCHEDULE'
          value: importReconcileSchedule
        }
        {
          name: 'IMPORT_RECONCILE_GRACE_SECONDS'
          value: string(importReconcileGraceSeconds)
        }
        {
          name: 'IMPORT_STUCK_SECONDS'
          value: string(importStuckSeconds)
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        alwaysReady: alwaysReady
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }
}

// Paths Easy Auth lets through without a token: the routes the API serves to anyone (health,
// OpenAPI and its reference page /api/docs with its files, the HMAC-signed payment webhook) and
// the Functions runtime webhook Event Grid delivers order events to (it carries its own system
// key; blob uploads arrive through a queue). tests/infra/test_easy_auth.py derives the
// anonymous routes from the app itself, so a new one cannot be forgotten here, and refuses an
// exclusion that would open a protected route. `/*` at the end matches everything below.
var easyAuthExcludedPaths = [
  '/api/health'
  '/api/health/ready'
  '/api/openapi.json'
  '/api/docs'
  '/api/docs/*'
  '/api/v1/payments/webhook'
  '/runtime/webhooks/eventgrid'
]

resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (easyAuthEnabled) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    // checkov applies its Microsoft.Web/sites checks to this child resource as if it were a site; it is the site's authsettingsV2 configuration, and the site itself is checked (and suppressed, with reasons) above:
    // checkov:skip=CKV_AZURE_13: this resource is the App Service authentication itself (checkov reads it as a site)
    // checkov:skip=CKV_AZURE_63: not a site: HTTP logging belongs to the site (FunctionAppLogs go to Log Analytics)
    // checkov:skip=CKV_AZURE_65: not a site: detailed error pages belong to the site, and the API answers problem+json
    // checkov:skip=CKV_AZURE_66: not a site: failed request tracing belongs to the site (Application Insights traces every request)
    // checkov:skip=CKV_AZURE_80: not a site: a Python app has no .NET Framework version
    // checkov:skip=CKV_AZURE_88: not a site: Flex Consumption mounts no Azure Files share
    // checkov:skip=CKV_AZURE_222: not a site: the site's public network access is decided (and suppressed) on the site
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: easyAuthExcludedPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authAudience
          openIdIssuer: authIssuer
        }
        validation: {
          allowedAudiences: empty(apiIdentifierUri) ? [authAudience] : [authAudience, apiIdentifierUri]
          defaultAuthorizationPolicy: {
            allowedApplications: allowedClientApplications
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}

// Deployments authenticate with Entra ID (azd, az CLI, pipelines); basic publishing
// credentials are switched off.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
