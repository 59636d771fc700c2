// Application Insights standard availability test: GET /readyz every 5 minutes from five
// regions, so an outage (Redis unreachable, bad settings, no replica) shows up in Application
// Insights even when nobody is chatting.

@description('Web test name (unique in the resource group).')
param name string
@description('Region of the Application Insights component.')
param location string
@description('Tags.')
param tags object
@description('Application Insights component resource id.')
param applicationInsightsId string
@description('URL to probe: https://<app fqdn>/readyz.')
param url string
@allowed([
  300
  600
  900
])
@description('Seconds between runs from each location.')
param frequencySeconds int = 300

resource webTest 'Microsoft.Insights/webtests@2022-06-15' = {
  name: name
  location: location
  // The hidden-link tag is what attaches a web test to its Application Insights component.
  tags: union(tags, {
    'hidden-link:${applicationInsightsId}': 'Resource'
  })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: name
    Name: name
    Description: 'GET ${url}: 200 when the service is up, Redis answers and settings are valid.'
    Enabled: true
    Frequency: frequencySeconds
    Timeout: 30
    Kind: 'standard'
    RetryEnabled: true
    Locations: [
      {
        Id: 'us-va-ash-azr'
      }
      {
        Id: 'us-ca-sjc-azr'
      }
      {
        Id: 'emea-nl-ams-azr'
      }
      {
        Id: 'emea-gb-db3-azr'
      }
      {
        Id: 'apac-sg-sin-azr'
      }
    ]
    Request: {
      RequestUrl: url
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

output id string = webTest.id
