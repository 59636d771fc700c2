// Azure OpenAI account (keys disabled: Microsoft Entra ID only) with one chat deployment. The
// app identity, and optionally the developer running azd, get "Cognitive Services OpenAI User".

@description('Account name, also its custom subdomain: https://<name>.openai.azure.com.')
param name string
@description('Region; must offer the model with the chosen deployment SKU.')
param location string
@description('Tags.')
param tags object
@description('Deployment name (AZURE_OPENAI_DEPLOYMENT).')
param deploymentName string
@description('Model name (AZURE_OPENAI_MODEL), e.g. gpt-4o-mini, gpt-4.1-mini, gpt-5-mini.')
param modelName string
@description('Model version, e.g. 2024-07-18 for gpt-4o-mini.')
param modelVersion string
@description('Deployment SKU: GlobalStandard, DataZoneStandard or Standard.')
param deploymentSku string
@minValue(1)
@description('Capacity in thousands of tokens per minute.')
param deploymentCapacity int
@description('Principal id of the app identity.')
param appPrincipalId string
@description('Principal id of the developer running azd. Empty: no grant.')
param developerPrincipalId string = ''
@description('Principal type of developerPrincipalId.')
param developerPrincipalType string = 'User'

var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: deploymentSku
    capacity: deploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    // The version is pinned by a parameter: move only when Azure retires it.
    versionUpgradeOption: 'OnceCurrentVersionExpired'
  }
}

resource appOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource developerOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(developerPrincipalId)) {
  name: guid(account.id, developerPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRoleId)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}

// https://<name>.openai.azure.com without the trailing slash: the client appends /openai/v1/.
var endpoint = account.properties.endpoint

output name string = account.name
output endpoint string = endsWith(endpoint, '/') ? substring(endpoint, 0, length(endpoint) - 1) : endpoint
output deploymentName string = deployment.name
output modelName string = modelName
