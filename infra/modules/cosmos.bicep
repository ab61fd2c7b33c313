// Cosmos DB (NoSQL API): the account with key-based auth disabled, the `orderflow` database and
// its four containers (shared/names.py COSMOS_CONTAINERS) with the indexes the app's queries use.

@description('Name of the Cosmos DB account.')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Database name (the COSMOS_DATABASE setting).')
param databaseName string

@description('Serverless (pay per request) or provisioned throughput.')
param serverless bool = true

@description('Throughput of the database when not serverless (autoscale maximum RU/s).')
@minValue(1000)
param autoscaleMaxThroughput int = 1000

@description('Seconds an idempotency record lives unless the document sets its own `ttl`.')
param idempotencyTtlSeconds int = 604800

@description('Private network (main.bicep vnetEnabled): the service is reached through its private endpoint only.')
param vnetEnabled bool = false

@description('Log Analytics workspace that receives the Cosmos DB logs.')
param logAnalyticsWorkspaceId string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    // checkov:skip=CKV_AZURE_101: vnetEnabled=false only: without the private network the app reaches the account over its public endpoint; local (key) auth is disabled, so data-plane access needs an Entra ID token and a Cosmos DB SQL role
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: serverless ? [{ name: 'EnableServerless' }] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
    // With the private network no public client, not even a VNet service endpoint, is admitted.
    isVirtualNetworkFilterEnabled: vnetEnabled
    enableAutomaticFailover: false
    enableMultipleWriteLocations: false
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous7Days'
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: serverless ? {} : { autoscaleSettings: { maxThroughput: autoscaleMaxThroughput } }
  }
}

// Orders: point reads and single-partition queries by customer, newest first, optionally by
// status; the expiry timer asks for pending orders older than a cutoff (cross-partition).
resource orders 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'orders'
  properties: {
    resource: {
      id: 'orders'
      partitionKey: {
        paths: [
          '/customerId'
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/lines/*'
          }
          {
            path: '/"_etag"/?'
          }
        ]
        compositeIndexes: [
          [
            {
              path: '/customerId'
              order: 'ascending'
            }
            {
              path: '/createdAt'
              order: 'descending'
            }
          ]
          [
            {
              path: '/customerId'
              order: 'ascending'
            }
            {
              path: '/status'
              order: 'ascending'
            }
            {
              path: '/createdAt'
              order: 'descending'
            }
          ]
          [
            {
              path: '/status'
              order: 'ascending'
            }
            {
              path: '/createdAt'
              order: 'ascending'
            }
          ]
        ]
      }
    }
  }
}

// Inventory: per SKU one stock item and one reservation item per order holding stock, in the
// SKU's partition: point reads, patches, transactional batches, one single-partition query.
resource inventory 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'inventory'
  properties: {
    resource: {
      id: 'inventory'
      partitionKey: {
        paths: [
          '/sku'
        ]
        kind: 'Hash'
        version: 2
      }
      // TTL on without a default: stock items never expire, reservation items carry their own
      // ttl (shared/repositories/reservations.py).
      defaultTtl: -1
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

// Idempotency records: point reads only, so nothing is indexed; they expire through TTL.
resource idempotency 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'idempotency'
  properties: {
    resource: {
      id: 'idempotency'
      partitionKey: {
        paths: [
          '/key'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: idempotencyTtlSeconds
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: []
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

// Import status: one constant-size run item per import, read by id and patched, plus one
// marker item per counted chunk in the import's partition (transactional batch).
resource imports 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = {
  parent: database
  name: 'imports'
  properties: {
    resource: {
      id: 'imports'
      partitionKey: {
        paths: [
          '/importId'
        ]
        kind: 'Hash'
        version: 2
      }
      // TTL on without a default: run items never expire, chunk markers carry their own ttl
      // (shared/repositories/import_runs.py).
      defaultTtl: -1
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/*'
          }
        ]
        excludedPaths: [
          {
            path: '/"_etag"/?'
          }
        ]
      }
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Requests'
        enabled: true
      }
    ]
  }
}

output id string = account.id
output name string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
