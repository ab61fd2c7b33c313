// Event Grid: the custom topic the app publishes order events to (CloudEvents 1.0, local auth
// disabled: publishers need an Entra ID token and `EventGrid Data Sender`), and the system topic
// on the storage account whose blob-created events drive the Event Grid-source blob trigger.
// The subscriptions that deliver to the functions are in ../event-subscriptions.bicep: they need
// the functions to exist, so they are deployed after the code.

@description('Name of the custom topic for order events.')
param topicName string

@description('Name of the system topic on the storage account.')
param systemTopicName string

@description('Resource id of the storage account whose events the system topic publishes.')
param storageAccountId string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Private network (main.bicep vnetEnabled): the app publishes through the topic\'s private endpoint only. Deliveries are outbound from Event Grid and unaffected.')
param vnetEnabled bool = false

@description('Log Analytics workspace that receives the Event Grid logs.')
param logAnalyticsWorkspaceId string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: topicName
  location: location
  tags: tags
  // The identity writes undeliverable events to the dead-letter container.
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_193: vnetEnabled=false only: without the private network the app publishes over the public endpoint; local auth is disabled, so publishers need an Entra ID token and EventGrid Data Sender
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccountId
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource topicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: topic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
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

resource systemTopicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
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

output topicId string = topic.id
output topicName string = topic.name
// The full publish URL (`https://<topic>.<region>-1.eventgrid.azure.net/api/events`).
output topicEndpoint string = topic.properties.endpoint
output topicPrincipalId string = topic.identity.principalId
output systemTopicName string = systemTopic.name
output systemTopicPrincipalId string = systemTopic.identity.principalId
