// Orderflow: everything the app uses, keyless. `azd up` deploys this file (azure.yaml), and so do
// the GitHub Actions and Azure DevOps pipelines (infra/scripts/provision.sh). After the code is
// deployed, event-subscriptions.bicep connects Event Grid to the functions.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name (the azd environment): names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region for every resource; it must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or update; empty means rg-<environmentName>.')
param resourceGroupName string = ''

@description('Optional person or group allowed to set Key Vault secrets (the payment webhook secret).')
param operatorPrincipalId string = ''

@description('Type of operatorPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Always-ready instances per function group, for example [{ name: \'http\', instanceCount: 1 }]. Empty: every group scales to zero.')
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

@description('Cosmos DB serverless (pay per request); false provisions autoscale throughput.')
param cosmosServerless bool = true

@description('Storage account redundancy.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Days Log Analytics keeps logs.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('E-mail address that receives alerts and budget notifications; empty for none (docs/OPERATIONS.md).')
param alertEmailAddress string = ''

@description('Monthly cost budget of the resource group, in the billing currency; notifies at 80% and 100%.')
@minValue(1)
param monthlyBudgetAmount int = 100

@description('Start of the budget (yyyy-MM-01). Empty on the first deployment: this month. Azure cannot change it afterwards, so azd and infra/scripts/deploy.sh pass back the ORDERFLOW_BUDGET_START_DATE output.')
param budgetStartDate string = ''

@description('Do not set: the first day of the current month, the budget start of a new environment.')
param currentMonthStart string = utcNow('yyyy-MM-01')

@description('Alert when more than this percentage of HTTP requests answer 5xx.')
@minValue(1)
@maxValue(100)
param http5xxPercentThreshold int = 5

@description('Alert when a function\'s 95th percentile duration exceeds this many milliseconds.')
@minValue(100)
param functionDurationP95ThresholdMs int = 10000

@description('Alert when a function fails more than this many times in 15 minutes.')
@minValue(0)
param functionFailuresThreshold int = 5

@description('Alert when imports reject more than this many rows in an hour.')
@minValue(0)
param importRowsRejectedThreshold int = 100

@description('Client id of the API\'s Entra ID application: infra/scripts/api_registration.py creates it before provisioning (the azd preprovision hook, infra/scripts/deploy.sh) from infra/identity/api-registration.json. Tokens for the API carry it as `aud` (AUTH_AUDIENCE).')
@minLength(36)
@maxLength(36)
param apiAppId string

@description('Identifier URI of the API application (`api://<client id>`); empty: derived from apiAppId.')
param apiIdentifierUri string = ''

@description('Easy Auth in front of the function app: requests to protected routes without a valid token get 401 from the platform (docs/SECURITY.md).')
param easyAuthEnabled bool = true

@description('Client id the API reference (/api/docs) signs in as (authorization code with PKCE): a single-page-application registration with the redirect URI https://<app host>/api/docs/oauth2-redirect.html; empty: the reader types one (docs/API_REFERENCE.md).')
param apiDocsClientId string = ''

@description('Client ids of the only applications allowed to call the API (Easy Auth); empty: any application the API\'s roles or scopes were granted to.')
param allowedClientApplications array = []

@description('API gateway in front of the function app: None, or an API Management tier with rate-limit-by-key (docs/INFRASTRUCTURE.md has the cost of each).')
@allowed([
  'None'
  'Developer'
  'Basic'
  'Standard'
  'BasicV2'
  'StandardV2'
])
param apiGatewaySku string = 'None'

@description('E-mail address API Management sends service notifications to (required with a gateway).')
param gatewayPublisherEmail string = ''

@description('Gateway: calls one caller (application and user) may make per period.')
@minValue(1)
param gatewayRateLimitCalls int = 100

@description('Gateway: the rate-limit period in seconds.')
@minValue(1)
@maxValue(300)
param gatewayRateLimitPeriodSeconds int = 60

@description('Gateway: calls one caller may make per quota period.')
@minValue(1)
param gatewayQuotaCalls int = 100000

@description('Gateway: the quota period in seconds.')
@minValue(3600)
param gatewayQuotaPeriodSeconds int = 86400

@description('Gateway: calls one client address may make per rate-limit period to the anonymous operations.')
@minValue(1)
param gatewayPublicRateLimitCalls int = 60

@description('Private network: a VNet the app integrates into, private endpoints and DNS zones for Storage, Cosmos DB, Service Bus (then Premium), Key Vault and the Event Grid topic, whose public endpoints then refuse traffic (docs/INFRASTRUCTURE.md has the cost).')
param vnetEnabled bool = false

// Names the app shares with the local stack (shared/names.py).
var cosmosDatabaseName = 'orderflow'
var fulfillmentQueueName = 'fulfillment'
var parkedQueueName = 'fulfillment-parked'
var appBlobContainers = [
  'order-imports'
  'order-imports-rejected'
  'reports'
]
var storageQueues = [
  'order-import-chunks'
  'order-import-chunks-poison'
  'order-import-events'
  'order-import-events-poison'
]
var deadLetterContainerName = 'eventgrid-deadletters'
var importsContainerName = 'order-imports'
var importEventsQueueName = 'order-import-events'

var budgetStart = !empty(budgetStartDate) ? budgetStartDate : currentMonthStart

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'orderflow'
}
var functionAppName = 'func-orderflow-${resourceToken}'
// Entra ID v2 tokens of this tenant (the API application requests v2 tokens).
var authIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var gatewayEnabled = apiGatewaySku != 'None'
var apiUri = !empty(apiIdentifierUri) ? apiIdentifierUri : 'api://${apiAppId}'


resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-orderflow-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-orderflow-${resourceToken}'
    applicationInsightsName: 'appi-orderflow-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: 'app-package-${take(resourceToken, 7)}'
    appContainerNames: appBlobContainers
    deadLetterContainerName: deadLetterContainerName
    queueNames: storageQueues
    vnetEnabled: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    vnetEnabled: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    name: 'cosmos-orderflow-${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    serverless: cosmosServerless
    vnetEnabled: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-orderflow-${resourceToken}'
    location: location
    tags: tags
    fulfillmentQueueName: fulfillmentQueueName
    parkedQueueName: parkedQueueName
    vnetEnabled: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    topicName: 'evgt-orderflow-${resourceToken}'
    systemTopicName: 'evgst-orderflow-${resourceToken}'
    storageAccountId: storage.outputs.id
    location: location
    tags: tags
    vnetEnabled: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-orderflow-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
    cosmosAccountId: cosmos.outputs.id
    serviceBusNamespaceId: serviceBus.outputs.id
    keyVaultId: keyVault.outputs.id
    eventGridTopicId: eventGrid.outputs.topicId
  }
}

// Roles first: the app reads its storage with the identity from its very first start.
module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
    keyVaultName: keyVault.outputs.name
    cosmosAccountName: cosmos.outputs.name
    cosmosDatabaseName: cosmos.outputs.databaseName
    serviceBusNamespaceName: serviceBus.outputs.name
    fulfillmentQueueName: serviceBus.outputs.fulfillmentQueueName
    parkedQueueName: serviceBus.outputs.parkedQueueName
    eventGridTopicName: eventGrid.outputs.topicName
    eventGridTopicPrincipalId: eventGrid.outputs.topicPrincipalId
    systemTopicPrincipalId: eventGrid.outputs.systemTopicPrincipalId
    importEventsQueueName: importEventsQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// The optional gateway first: the function app then accepts direct calls only from its addresses.
module gateway 'modules/gateway.bicep' = if (gatewayEnabled) {
  name: 'gateway'
  scope: rg
  params: {
    name: 'apim-orderflow-${resourceToken}'
    location: location
    tags: tags
    skuName: apiGatewaySku
    publisherEmail: gatewayPublisherEmail
    functionAppHostName: '${functionAppName}.azurewebsites.net'
    apiAudience: apiAppId
    apiIdentifierUri: apiUri
    rateLimitCalls: gatewayRateLimitCalls
    rateLimitPeriodSeconds: gatewayRateLimitPeriodSeconds
    quotaCalls: gatewayQuotaCalls
    quotaPeriodSeconds: gatewayQuotaPeriodSeconds
    publicRateLimitCalls: gatewayPublicRateLimitCalls
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

// Blob uploads -> the import queue. Event Grid checks its identity's roles when the
// subscription is created, so it follows rbac; it does not need the function app.
module importEvents 'modules/import-events.bicep' = {
  name: 'import-events'
  scope: rg
  dependsOn: [
    rbac
  ]
  params: {
    systemTopicName: eventGrid.outputs.systemTopicName
    storageAccountName: storage.outputs.name
    importsContainerName: importsContainerName
    importEventsQueueName: importEventsQueueName
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    planName: 'plan-orderflow-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmos.outputs.databaseName
    serviceBusFullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
    fulfillmentQueueName: serviceBus.outputs.fulfillmentQueueName
    eventGridTopicEndpoint: eventGrid.outputs.topicEndpoint
    keyVaultUri: keyVault.outputs.uri
    authIssuer: authIssuer
    authAudience: apiAppId
    apiIdentifierUri: apiUri
    easyAuthEnabled: easyAuthEnabled
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    allowedInboundAddresses: gatewayEnabled ? gateway.outputs.publicIpAddresses : []
    allowedClientApplications: allowedClientApplications
    apiDocsClientId: apiDocsClientId
    alwaysReady: alwaysReady
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

// Operations (docs/OPERATIONS.md): alerts and their action group, the workbook, the budget.
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    actionGroupName: 'ag-orderflow-${resourceToken}'
    alertNamePrefix: 'alert-orderflow-${resourceToken}'
    location: location
    tags: tags
    alertEmailAddress: alertEmailAddress
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceName: serviceBus.outputs.name
    fulfillmentQueueName: serviceBus.outputs.fulfillmentQueueName
    parkedQueueName: serviceBus.outputs.parkedQueueName
    http5xxPercentThreshold: http5xxPercentThreshold
    functionDurationP95ThresholdMs: functionDurationP95ThresholdMs
    functionFailuresThreshold: functionFailuresThreshold
    importRowsRejectedThreshold: importRowsRejectedThreshold
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    displayName: 'Orderflow operations (${environmentName})'
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    serviceBusNamespaceName: serviceBus.outputs.name
  }
}

module budget 'modules/budget.bicep' = {
  name: 'budget'
  scope: rg
  params: {
    name: 'budget-orderflow-${resourceToken}'
    amount: monthlyBudgetAmount
    startDate: budgetStart
    actionGroupId: alerts.outputs.actionGroupId
    contactEmails: empty(alertEmailAddress) ? [] : [alertEmailAddress]
  }
}

// Names only: no key, connection string or secret leaves the deployment.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}'
output AUTH_ISSUER string = authIssuer
output AUTH_AUDIENCE string = apiAppId
output ORDERFLOW_API_IDENTIFIER_URI string = apiUri
// The gateway's URL when there is one (callers and the smoke tests use it), else empty.
output ORDERFLOW_GATEWAY_URL string = gatewayEnabled ? gateway.outputs.gatewayUrl : ''
// The smoke tests bound their 429 loop with it.
output ORDERFLOW_GATEWAY_RATE_LIMIT_CALLS int = gatewayRateLimitCalls
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output EVENTGRID_TOPIC_NAME string = eventGrid.outputs.topicName
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.systemTopicName
output EVENTGRID_DEAD_LETTER_CONTAINER string = deadLetterContainerName
// Fed back as budgetStartDate on the next deployment (azd env, deploy.sh): it cannot change.
output ORDERFLOW_BUDGET_START_DATE string = budgetStart
