// Service Bus namespace (local auth disabled) and the `fulfillment` queue: duplicate detection
// drops repeated commands (the router sets a deterministic message id), and messages that expire
// or exceed the delivery count go to the dead-letter queue, never away.

@description('Name of the Service Bus namespace.')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Queue for fulfillment commands (shared/names.py FULFILLMENT_QUEUE).')
param fulfillmentQueueName string

@description('Queue where fulfillment parks commands that can never succeed, with their reason (shared/names.py FULFILLMENT_PARKED_QUEUE).')
param parkedQueueName string

@description('How long message ids are remembered for duplicate detection (ISO 8601 duration).')
param duplicateDetectionWindow string = 'PT1H'

@description('Deliveries before the broker dead-letters a message.')
@minValue(1)
@maxValue(100)
param maxDeliveryCount int = 10

@description('Private network (main.bicep vnetEnabled): Premium (the tier with private endpoints, one messaging unit) reached through its private endpoint only.')
param vnetEnabled bool = false

@description('Log Analytics workspace that receives the Service Bus logs.')
param logAnalyticsWorkspaceId string

// Standard is the smallest tier with duplicate detection; Premium adds private endpoints,
// customer-managed keys and double encryption.
resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: vnetEnabled
    ? {
        name: 'Premium'
        tier: 'Premium'
        capacity: 1
      }
    : {
        name: 'Standard'
        tier: 'Standard'
      }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

resource fulfillmentQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: fulfillmentQueueName
  properties: {
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: duplicateDetectionWindow
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
    enablePartitioning: false
    enableBatchedOperations: true
  }
}

// A Python function cannot dead-letter its own message, so poison commands are copied here with
// their reason at first delivery (docs/EVENTS.md). Kept long enough for an operator to act.
resource parkedQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: parkedQueueName
  properties: {
    requiresDuplicateDetection: false
    deadLetteringOnMessageExpiration: true
    maxDeliveryCount: maxDeliveryCount
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
    enablePartitioning: false
    enableBatchedOperations: true
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
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

output id string = namespace.id
output name string = namespace.name
// `https://<name>.servicebus.windows.net:443/` -> `<name>.servicebus.windows.net`
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output fulfillmentQueueName string = fulfillmentQueue.name
output parkedQueueName string = parkedQueue.name
