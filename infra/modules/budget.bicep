// A monthly cost budget on the resource group, with notifications to the action group (and the
// alert e-mail) at 80% and 100% of actual cost. Azure refuses to change a budget's start date
// once it exists, so the start date is a parameter pinned after the first deployment
// (main.bicep outputs it; azd and infra/scripts/deploy.sh pass it back).

@description('Name of the budget.')
param name string

@description('Monthly amount, in the billing currency of the subscription.')
@minValue(1)
param amount int

@description('First day of the first budgeted month, yyyy-MM-dd (never changed after creation).')
param startDate string

@description('Action group notified at each threshold.')
param actionGroupId string

@description('E-mail addresses notified at each threshold (besides the action group).')
param contactEmails array = []

resource budget 'Microsoft.Consumption/budgets@2021-10-01' = {
  name: name
  properties: {
    category: 'Cost'
    amount: amount
    timeGrain: 'Monthly'
    timePeriod: {
      startDate: startDate
    }
    notifications: {
      actual80Percent: {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: 80
        thresholdType: 'Actual'
        contactGroups: [
          actionGroupId
        ]
        contactEmails: contactEmails
      }
      actual100Percent: {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: 100
        thresholdType: 'Actual'
        contactGroups: [
          actionGroupId
        ]
        contactEmails: contactEmails
      }
    }
  }
}

output name string = budget.name
