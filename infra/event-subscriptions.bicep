// Event Grid -> functions. Deployed after the code (azd postdeploy hook, pipelines), because
// both destinations must exist first: Event Grid validates a destination when the subscription
// is created, and the blob extension's system key exists only once the host has loaded the
// blob trigger.
//
// - Order events: custom topic -> `route_order_events` (Event Grid trigger) with the
//   `AzureFunction` endpoint type. Event Grid resolves the function and its key itself, so no
//   key appears here; this works on Flex Consumption like on any plan.
// - Blob uploads: storage system topic -> `import_order_file` (blob trigger, source EventGrid).
//   A blob trigger is not an Event Grid trigger, so `AzureFunction` cannot target it: the
//   documented destination is the blob extension's webhook,
//   /runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<blobs_extension key>.
//   The key is read at deployment time with listKeys() and stored only in the subscription
//   (Event Grid never returns a webhook's query string); it is in no app setting or output.
// Undeliverable events are dead-lettered to a blob container with the topics' own identities.
targetScope = 'resourceGroup'

@description('Function app name (output AZURE_FUNCTION_APP_NAME of main.bicep).')
param functionAppName string

@description('Custom topic name (output EVENTGRID_TOPIC_NAME).')
param topicName string

@description('Storage system topic name (output EVENTGRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Storage account name (output AZURE_STORAGE_ACCOUNT_NAME).')
param storageAccountName string

@description('Dead-letter container (output EVENTGRID_DEAD_LETTER_CONTAINER).')
param deadLetterContainerName string = 'eventgrid-deadletters'

@description('Create the order-events subscription (its function is deployed).')
param connectOrderEvents bool = true

@description('Create the blob-upload subscription (its function is deployed).')
param connectOrderImports bool = true

@description('Event Grid-triggered function that routes order events.')
param routerFunctionName string = 'route_order_events'

@description('Blob-triggered function that imports uploaded order files.')
param importFunctionName string = 'import_order_file'

@description('Blob container partners upload order files to (shared/names.py IMPORTS_BLOB_CONTAINER).')
param importsContainerName string = 'order-imports'

@description('Order event types the router handles; other types are not delivered to it.')
param routedEventTypes array = [
  'Orderflow.Order.Paid'
]

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource functionHost 'Microsoft.Web/sites/host@2024-04-01' existing = {
  parent: site
  name: 'default'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
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

resource orderImports 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (connectOrderImports) {
  parent: systemTopic
  name: 'import-order-file'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${site.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${importFunctionName}&code=${functionHost.listKeys().systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${importsContainerName}/blobs/'
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: deadLetter
  }
}
