// The action group (e-mail) and every alert rule docs/OPERATIONS.md has a runbook for. Service
// Bus dead letters and parked commands are platform metrics (metric alerts, per queue through the
// EntityName dimension). Rates, percentiles and the app's own metrics are log search rules on
// Application Insights: the custom metrics (customMetrics) and log fields (customDimensions) they
// query are the ones shared/metrics.py emits, which tests/infra/test_telemetry_contract.py checks.
// The storage poison queue has no metric of its own in Azure Monitor (QueueMessageCount counts
// the whole account), so its alert reads the depth the dead_letter_watch timer reports.

@description('Name of the action group.')
param actionGroupName string

@description('Prefix of every alert rule name.')
param alertNamePrefix string

@description('Azure region of the log search alert rules (the region of Application Insights).')
param location string

@description('Tags for the resources.')
param tags object = {}

@description('E-mail address that receives alerts and budget notifications; empty for none.')
param alertEmailAddress string = ''

@description('Application Insights component the log search rules query.')
param applicationInsightsName string

@description('Service Bus namespace of the fulfillment queues.')
param serviceBusNamespaceName string

@description('Queue for fulfillment commands (its dead-letter queue must stay empty).')
param fulfillmentQueueName string

@description('Queue where fulfillment parks commands that can never succeed.')
param parkedQueueName string

@description('Alert when more than this percentage of HTTP requests fail with 5xx (15 minutes, at least 20 requests).')
@minValue(1)
@maxValue(100)
param http5xxPercentThreshold int = 5

@description('Alert when a function\'s 95th percentile duration exceeds this many milliseconds (15 minutes).')
@minValue(100)
param functionDurationP95ThresholdMs int = 10000

@description('Alert when a function fails more than this many times in 15 minutes.')
@minValue(0)
param functionFailuresThreshold int = 5

@description('Alert when imports reject more than this many rows in an hour.')
@minValue(0)
param importRowsRejectedThreshold int = 100

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' existing = {
  name: serviceBusNamespaceName
}

var operatorsEmail = {
  name: 'operators'
  emailAddress: alertEmailAddress
  useCommonAlertSchema: true
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'orderflow'
    enabled: true
    emailReceivers: empty(alertEmailAddress) ? [] : [operatorsEmail]
  }
}

// ---------------------------------------------------------------- Service Bus (platform metrics)

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${alertNamePrefix}-servicebus-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'Messages in the dead-letter queue of ${fulfillmentQueueName} or ${parkedQueueName} (expired or delivered too often). Runbook: docs/OPERATIONS.md#dead-lettered-fulfillment-commands'
    severity: 2
    enabled: true
    scopes: [
      namespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadletteredMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                fulfillmentQueueName
                parkedQueueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// A Python function cannot dead-letter its own message, so poison commands land here as active
// messages, with their reason: any message in this queue needs a person.
resource parkedCommands 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${alertNamePrefix}-servicebus-parked-commands'
  location: 'global'
  tags: tags
  properties: {
    description: 'Fulfillment commands parked in ${parkedQueueName} (bad schema, unknown order, illegal transition). Runbook: docs/OPERATIONS.md#parked-fulfillment-commands'
    severity: 2
    enabled: true
    scopes: [
      namespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'ActiveMessages'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                parkedQueueName
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

// ------------------------------------------------------ Application Insights (log search rules)

resource http5xxRate 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-http-5xx-rate'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: HTTP 5xx rate'
    description: 'More than ${http5xxPercentThreshold}% of HTTP requests answered 5xx. Runbook: docs/OPERATIONS.md#http-5xx-rate'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
requests
| where isnotempty(url)
| summarize total = count(), failed = countif(toint(resultCode) >= 500)
| where total >= 20
| extend failedPercent = 100.0 * failed / total
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'failedPercent'
          operator: 'GreaterThan'
          threshold: http5xxPercentThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource functionDurationP95 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-function-duration-p95'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: p95 function duration'
    description: 'A function\'s 95th percentile duration is above ${functionDurationP95ThresholdMs} ms. Runbook: docs/OPERATIONS.md#p95-function-duration'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
requests
| summarize p95DurationMs = percentile(duration, 95) by FunctionName = name
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'p95DurationMs'
          dimensions: [
            {
              name: 'FunctionName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: functionDurationP95ThresholdMs
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Client errors (4xx) are the caller's; failures are exceptions and 5xx answers.
resource functionFailures 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-function-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: function failures'
    description: 'A function failed more than ${functionFailuresThreshold} times in 15 minutes. Runbook: docs/OPERATIONS.md#function-failures'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
requests
| where success == false and (isempty(url) or toint(resultCode) >= 500)
| summarize failures = count() by FunctionName = name
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'FunctionName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: functionFailuresThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// The dead_letter_watch timer reports the depth every 15 minutes: look back 30.
resource poisonQueue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-import-poison-queue'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: import chunks in the poison queue'
    description: 'Import chunks or upload events the host gave up on are in a storage poison queue (order-import-chunks-poison, order-import-events-poison). Runbook: docs/OPERATIONS.md#import-chunks-in-the-poison-queue'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == 'orderflow.storage.poison_queue_depth'
| summarize depth = max(value) by Queue = tostring(customDimensions.queue)
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'depth'
          dimensions: [
            {
              name: 'Queue'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

// Upload events should not get lost: any import the reconciliation timer had to start (its event
// never came) or restart (its file pass died) is worth a look.
resource importsReconciled 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-imports-reconciled'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: imports started by the reconciliation'
    description: 'An upload\'s BlobCreated event did not reach order-import-events (or its file pass died) and the reconciliation timer started it. Runbook: docs/OPERATIONS.md#imports-reconciled'
    severity: 3
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == 'orderflow.imports.reconciled'
| summarize reconciled = sum(valueSum)
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'reconciled'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource importRowsRejected 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-import-rows-rejected'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Orderflow: import rows rejected'
    description: 'Imports rejected more than ${importRowsRejectedThreshold} rows in an hour. Runbook: docs/OPERATIONS.md#import-rows-rejected'
    severity: 3
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == 'orderflow.imports.rows_rejected'
| summarize rejectedRows = sum(valueSum)
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'rejectedRows'
          operator: 'GreaterThan'
          threshold: importRowsRejectedThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
