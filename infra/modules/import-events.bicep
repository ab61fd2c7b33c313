// Blob uploads -> imports, keyless: the storage account's system topic delivers every
// Microsoft.Storage.BlobCreated event of the `order-imports` container to the storage queue
// `order-import-events` (StorageQueue destination), where the queue-triggered `import_order_file`
// reads it. Only a reference to the blob travels (name, ETag, size, URL), never its content:
// a blob trigger would have the host read the whole blob into memory first.
//
// Event Grid writes with the system topic's own identity (deliveryWithResourceIdentity), which
// holds `Storage Queue Data Message Sender` on that one queue and `Storage Blob Data
// Contributor` on the dead-letter container (modules/rbac.bicep), and nothing else. Nothing here
// needs the function app to exist (no webhook, no key), so it deploys with the infrastructure:
// no post-deploy step, and no key is read or stored anywhere.
// Mirrored locally by localdev/eventgrid/storage_source.py (SUBSCRIPTIONS).

@description('Storage system topic (modules/eventgrid.bicep).')
param systemTopicName string

@description('Storage account that holds the imports container, the queue and the dead-letter container.')
param storageAccountName string

@description('Blob container partners upload order files to (shared/names.py IMPORTS_BLOB_CONTAINER).')
param importsContainerName string = 'order-imports'

@description('Storage queue the events are written to (shared/names.py IMPORT_EVENTS_QUEUE).')
param importEventsQueueName string = 'order-import-events'

@description('Blob container for events that could not be delivered.')
param deadLetterContainerName string

@description('How long an event waits in the queue for the function (seconds; Event Grid\'s default is 7 days).')
@minValue(60)
param queueMessageTimeToLiveInSeconds int = 604800

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource orderImports 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'import-order-file'
  properties: {
    deliveryWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: storage.id
          queueName: importEventsQueueName
          queueMessageTimeToLiveInSeconds: queueMessageTimeToLiveInSeconds
        }
      }
    }
    // One event a queue message: the event's JSON object, base64-encoded (what the queue
    // trigger decodes by default).
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${importsContainerName}/blobs/'
    }
    // Event Grid retries for a day; after that (or for blobs older than the subscription) the
    // reconciliation timer finds uploads without an import run.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
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
  }
}

output subscriptionName string = orderImports.name
