// Event Grid -> functions. Deployed after the code (azd postdeploy hook, pipelines), because
// the destination must exist first: Event Grid validates it when the subscription is created.
//
// - Order events: custom topic -> `route_order_events` (Event Grid trigger) with the
//   `AzureFunction` endpoint type. Event Grid resolves the function and its key itself, so no
//   key appears here; this works on Flex Consumption like on any plan.
// Blob uploads do not come here: they go to a storage queue (modules/import-events.bicep, part
// of main.bicep), which needs no function, webhook or key.
// Undeliverable events are dead-lettered to a blob container with the topic's own identity.
targetScope = 'resourceGroup'

@description('Function app name (output AZURE_FUNCTION_APP_NAME of main.bicep).')
param functionAppName string

@description('Custom topic name (output EVENTGRID_TOPIC_NAME).')
param topicName string

@description('Storage account name (output AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('Dead-letter container (output EVENTGRID_DEAD_LETTER_CONTAINER).')
param deadLetterContainerName string = 'eventgrid-deadletters'

@description('Create the order-events subscription (its function is deployed).')
param connectOrderEvents bool = true

@description('Event Grid-triggered function that routes order events.')
param routerFunctionName string = 'route_order_events'

@description('Order event types the router handles; other types are not delivered to it.')
param routedEventTypes array = [
  'Orderflow.Order.Paid'
]

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

var deadLetter = {
  identity: {
    type: 'SystemAssigned'
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: storage.id
      blobContainerName: deadLetterContainerName
    }
  }
}

resource orderEvents 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = if (connectOrderEvents) {
  parent: topic
  name: 'route-order-events'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${site.id}/functions/${routerFunctionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: routedEventTypes
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: deadLetter
  }
}
