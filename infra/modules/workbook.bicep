// The operations workbook in Application Insights (infra/workbooks/orderflow.json): orders per
// minute by status, payment-to-fulfilment latency, import rows, dead-letter and poison-queue
// depth, cold starts, duration and failures per function, and one order's trace. Its queries use
// the custom metrics and log fields the app emits (shared/metrics.py), which
// tests/infra/test_telemetry_contract.py checks. docs/OPERATIONS.md explains each chart.

@description('Display name of the workbook.')
param displayName string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('Application Insights component the workbook queries (and is listed under).')
param applicationInsightsName string

@description('Service Bus namespace whose queue metrics the workbook charts.')
param serviceBusNamespaceName string

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

// The JSON names its resources with placeholders, so the same file serves every environment.
var definition = loadTextContent('../workbooks/orderflow.json')
var withAppInsights = replace(definition, '__APPLICATION_INSIGHTS_ID__', appInsights.id)
var serializedData = replace(withAppInsights, '__SERVICE_BUS_NAMESPACE_ID__', namespace.id)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name must be a GUID; this one is stable per resource group.
  name: guid(resourceGroup().id, 'orderflow-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: serializedData
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
