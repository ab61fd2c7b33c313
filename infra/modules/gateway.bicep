// The optional API gateway (main.bicep apiGatewaySku): API Management in front of the function
// app. The API is imported from docs/openapi.json (the document the app serves); the policies are
// the XML files in infra/policies/ (checked offline by tests/infra/test_gateway_policies.py):
// Entra ID token validation with the API's audience, a rate limit and a quota per caller
// (application and user), RFC 9457 problem+json answers for 401, 403 and 429 (with Retry-After).
// The caller's token is forwarded unchanged, because the app authorizes each caller itself; the
// function app accepts direct traffic only from the gateway's addresses (functionapp.bicep).

@description('Name of the API Management service.')
param name string

@description('Azure region.')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('API Management tier; every one allowed here supports rate-limit-by-key and quota-by-key (the Consumption tier does not).')
@allowed([
  'Developer'
  'Basic'
  'Standard'
  'BasicV2'
  'StandardV2'
])
param skuName string

@description('E-mail address API Management sends service notifications to.')
@minLength(1)
param publisherEmail string

@description('Organisation name shown in the developer portal and notifications.')
param publisherName string = 'Orderflow'

@description('Host name of the function app the gateway forwards to.')
param functionAppHostName string

@description('Client id of the API application: the audience of the tokens the gateway accepts.')
param apiAudience string

@description('Identifier URI of the API application, accepted as audience too.')
param apiIdentifierUri string

@description('Calls a caller (application and user) may make per rate-limit period.')
@minValue(1)
param rateLimitCalls int

@description('Rate-limit period in seconds.')
@minValue(1)
@maxValue(300)
param rateLimitPeriodSeconds int

@description('Calls a caller may make per quota period.')
@minValue(1)
param quotaCalls int

@description('Quota period in seconds (86400: a day).')
@minValue(3600)
param quotaPeriodSeconds int

@description('Calls one client IP address may make per rate-limit period to the anonymous operations (health, OpenAPI, payment webhook).')
@minValue(1)
param publicRateLimitCalls int

@description('Log Analytics workspace that receives the gateway logs.')
param logAnalyticsWorkspaceId string

// Operations anyone may call: their OpenAPI operations declare `security: []`
// (tests/infra/test_gateway_policies.py keeps this list equal to the document's).
var publicOperations = [
  'health_live'
  'health_ready'
  'openapi_document'
  'payment_webhook'
]

// Every {{name}} the policies use; the limits come from the parameters above.
var namedValues = {
  'orderflow-tenant-id': tenant().tenantId
  'orderflow-api-audience': apiAudience
  'orderflow-api-identifier-uri': apiIdentifierUri
  'gateway-rate-limit-calls': string(rateLimitCalls)
  'gateway-rate-limit-period-seconds': string(rateLimitPeriodSeconds)
  'gateway-quota-calls': string(quotaCalls)
  'gateway-quota-period-seconds': string(quotaPeriodSeconds)
  'gateway-public-rate-limit-calls': string(publicRateLimitCalls)
}

resource service 'Microsoft.ApiManagement/service@2024-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    capacity: 1
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_174: the gateway is the API's public entry point: shops, partners and the payment provider call it over the internet, and it validates each token before anything reaches the app
    // checkov:skip=CKV_AZURE_107: VNet injection exists only in the Developer and Premium tiers; the gateway's backend is the function app's public endpoint, restricted to the gateway's addresses
    publisherEmail: publisherEmail
    publisherName: publisherName
    // Only TLS 1.2+ towards callers and the backend.
    customProperties: {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'False'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'False'
    }
  }
}

resource values 'Microsoft.ApiManagement/service/namedValues@2024-05-01' = [
  for item in items(namedValues): {
    parent: service
    name: item.key
    properties: {
      displayName: item.key
      value: item.value
      secret: false
    }
  }
]

resource backend 'Microsoft.ApiManagement/service/backends@2024-05-01' = {
  parent: service
  name: 'orderflow-function-app'
  properties: {
    description: 'The Orderflow function app'
    url: 'https://${functionAppHostName}'
    protocol: 'http'
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
}

resource api 'Microsoft.ApiManagement/service/apis@2024-05-01' = {
  parent: service
  name: 'orderflow'
  properties: {
    displayName: 'Orderflow API'
    // The document's paths start with /api, as the function app's do.
    path: ''
    protocols: [
      'https'
    ]
    // Callers are identified by their Entra ID token, not by a subscription key (docs/SECURITY.md).
    subscriptionRequired: false
    format: 'openapi+json'
    value: loadTextContent('../../docs/openapi.json')
    serviceUrl: 'https://${functionAppHostName}'
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2024-05-01' = {
  parent: api
  name: 'policy'
  dependsOn: [
    values
    backend
  ]
  properties: {
    format: 'xml'
    value: loadTextContent('../policies/api.xml')
  }
}

resource publicOperation 'Microsoft.ApiManagement/service/apis/operations@2024-05-01' existing = [
  for operation in publicOperations: {
    parent: api
    name: operation
  }
]

resource publicOperationPolicy 'Microsoft.ApiManagement/service/apis/operations/policies@2024-05-01' = [
  for (operation, i) in publicOperations: {
    parent: publicOperation[i]
    name: 'policy'
    dependsOn: [
      values
      backend
    ]
    properties: {
      format: 'xml'
      value: loadTextContent('../policies/public-operation.xml')
    }
  }
]

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: service
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

output name string = service.name
output gatewayUrl string = service.properties.gatewayUrl
// Static outbound addresses of the classic tiers; empty for the v2 tiers, whose addresses are not
// fixed (docs/SECURITY.md: what that means for direct calls to the function app).
output publicIpAddresses array = service.properties.?publicIPAddresses ?? []
