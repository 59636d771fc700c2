// Threadwise on Azure, for the Azure Developer CLI (`azd up`; see README.md beside this file).
//
// One resource group holding: Log Analytics + Application Insights, a container registry, a
// user-assigned managed identity (pulls images, reads Key Vault, calls Azure OpenAI, and is the
// Teams bot's app identity), Key Vault, Azure Managed Redis, an Azure OpenAI account with a chat
// deployment, a Container Apps environment and app, and an Azure Bot with the Teams channel.
targetScope = 'subscription'

metadata description = 'Threadwise: a Slack and Microsoft Teams chatbot on Azure Container Apps, Azure OpenAI and Azure Managed Redis.'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every regional resource (Azure OpenAI may use openAiLocation instead).')
param location string

@description('Object id of whoever runs azd; granted "Cognitive Services OpenAI User" so `threadwise chat` and `threadwise doctor` work from a workstation. Empty: no grant.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal principalId is.')
param principalType string = 'User'

@description('Set by azd (SERVICE_THREADWISE_RESOURCE_EXISTS): true once the container app exists, so provisioning again keeps the image azd deployed.')
param threadwiseExists bool = false

// Names: empty means derived from the environment name and a hash of subscription, environment
// and region (globally unique names need it).
@description('Resource group name. Empty: rg-<environmentName>.')
param resourceGroupName string = ''
@description('Log Analytics workspace name. Empty: derived.')
param logAnalyticsName string = ''
@description('Application Insights name. Empty: derived.')
param applicationInsightsName string = ''
@description('Container registry name (5-50 letters and digits, globally unique). Empty: derived.')
param containerRegistryName string = ''
@description('User-assigned managed identity name. Empty: derived.')
param identityName string = ''
@description('Key Vault name (3-24 characters, globally unique). Empty: derived.')
param keyVaultName string = ''
@description('Azure Managed Redis cluster name. Empty: derived.')
param redisName string = ''
@description('Azure OpenAI account name, also its custom subdomain (globally unique). Empty: derived.')
param openAiName string = ''
@description('Container Apps environment name. Empty: derived.')
param containerAppsEnvironmentName string = ''
@description('Container app name (at most 32 lowercase letters, digits and hyphens). Empty: derived.')
param containerAppName string = ''
@description('Azure Bot resource name (globally unique). Empty: derived.')
param botName string = ''

// Azure OpenAI
@description('Region of the Azure OpenAI account; pick one that offers the model with the chosen SKU. Empty: location.')
param openAiLocation string = ''
@description('Deployment name: AZURE_OPENAI_DEPLOYMENT, the `model` parameter of every call.')
param openAiDeploymentName string = 'gpt-4o-mini'
@description('Model to deploy; also AZURE_OPENAI_MODEL, which picks the tokenizer.')
param openAiModelName string = 'gpt-4o-mini'
@description('Model version to deploy.')
param openAiModelVersion string = '2024-07-18'
@allowed([
  'GlobalStandard'
  'DataZoneStandard'
  'Standard'
])
@description('Deployment SKU.')
param openAiDeploymentSku string = 'GlobalStandard'
@minValue(1)
@description('Deployment capacity in thousands of tokens per minute.')
param openAiDeploymentCapacity int = 30

// Azure Managed Redis
@description('Azure Managed Redis SKU, e.g. Balanced_B0, Balanced_B1, MemoryOptimized_M10.')
param redisSkuName string = 'Balanced_B0'
@description('Replicate the Redis data set (SLA, no data loss on a node failure). false halves the cost for test environments.')
param redisHighAvailability bool = true
@allowed([
  'OSSCluster'
  'EnterpriseCluster'
])
@description('OSSCluster (REDIS_CLUSTER=true): the service talks to every shard directly. EnterpriseCluster: one proxied endpoint. See infra/azure/README.md.')
param redisClusteringPolicy string = 'OSSCluster'
@allowed([
  'entra'
  'password'
])
@description('entra: keyless, the managed identity signs in with its Entra token (access keys off). password: an access key in Key Vault.')
param redisAuth string = 'entra'

// Container app
@description('vCPU per replica, as a string: 0.25, 0.5, 0.75, 1.0, ...')
param containerCpu string = '0.5'
@description('Memory per replica; must pair with containerCpu (0.5 vCPU: 1Gi).')
param containerMemory string = '1Gi'
@minValue(1)
@description('Replicas that always run; at least 1 so Slack and Teams never wait for a cold start.')
param minReplicas int = 1
@minValue(1)
@maxValue(300)
@description('Most replicas the HTTP scale rule may add. Replicas coordinate through Redis.')
param maxReplicas int = 10
@minValue(1)
@description('Concurrent HTTP requests per replica before another replica is added.')
param httpConcurrentRequests int = 20

// Azure Bot
@allowed([
  'F0'
  'S1'
])
@description('Azure Bot pricing tier (Teams is a standard channel: F0 is enough to start).')
param botSku string = 'F0'
@description('Bot display name in the Azure Bot resource.')
param botDisplayName string = 'Threadwise'

// Application settings (docs/spec.md section 6)
@secure()
@description('SLACK_BOT_TOKEN (xoxb-...), stored in Key Vault. Empty: Slack disabled.')
param slackBotToken string = ''
@secure()
@description('SLACK_SIGNING_SECRET, stored in Key Vault. Empty: not set.')
param slackSigningSecret string = ''
@description('BOT_ADMINS: comma-separated slack:<user id> and teams:<AAD object id>.')
param botAdmins string = ''
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
  'CRITICAL'
])
@description('LOG_LEVEL.')
param logLevel string = 'INFO'
@minValue(1)
@description('TOKEN_LIMIT: prompt plus reserved reply, in tokens.')
param tokenLimit int = 16384
@minValue(1)
@description('MAX_RESPONSE_TOKENS: reply cap.')
param maxResponseTokens int = 1024

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var serviceName = 'threadwise'
var targetPort = 3978

var names = {
  resourceGroup: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  logAnalytics: !empty(logAnalyticsName) ? logAnalyticsName : 'log-${resourceToken}'
  applicationInsights: !empty(applicationInsightsName) ? applicationInsightsName : 'appi-${resourceToken}'
  containerRegistry: !empty(containerRegistryName) ? containerRegistryName : 'cr${resourceToken}'
  identity: !empty(identityName) ? identityName : 'id-${serviceName}-${resourceToken}'
  keyVault: !empty(keyVaultName) ? keyVaultName : 'kv-${resourceToken}'
  redis: !empty(redisName) ? redisName : 'redis-${resourceToken}'
  openAi: !empty(openAiName) ? openAiName : 'oai-${resourceToken}'
  containerAppsEnvironment: !empty(containerAppsEnvironmentName) ? containerAppsEnvironmentName : 'cae-${resourceToken}'
  containerApp: !empty(containerAppName) ? containerAppName : 'ca-${serviceName}-${resourceToken}'
  bot: !empty(botName) ? botName : 'bot-${serviceName}-${resourceToken}'
  availabilityTest: 'readyz-${resourceToken}'
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: names.resourceGroup
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: rg
  params: {
    name: names.containerRegistry
    location: location
    tags: tags
    pullPrincipalId: identity.outputs.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: names.keyVault
    location: location
    tags: tags
    secretsReaderPrincipalId: identity.outputs.principalId
    slackBotToken: slackBotToken
    slackSigningSecret: slackSigningSecret
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: rg
  params: {
    name: names.redis
    location: location
    tags: tags
    skuName: redisSkuName
    highAvailability: redisHighAvailability
    clusteringPolicy: redisClusteringPolicy
    auth: redisAuth
    appPrincipalId: identity.outputs.principalId
    keyVaultName: keyVault.outputs.name
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: names.openAi
    location: !empty(openAiLocation) ? openAiLocation : location
    tags: tags
    deploymentName: openAiDeploymentName
    modelName: openAiModelName
    modelVersion: openAiModelVersion
    deploymentSku: openAiDeploymentSku
    deploymentCapacity: openAiDeploymentCapacity
    appPrincipalId: identity.outputs.principalId
    developerPrincipalId: principalId
    developerPrincipalType: principalType
  }
}

module containerAppsEnvironment 'modules/container-apps-environment.bicep' = {
  name: 'container-apps-environment'
  scope: rg
  params: {
    name: names.containerAppsEnvironment
    location: location
    tags: tags
    logAnalyticsName: monitoring.outputs.logAnalyticsName
  }
}

module app 'modules/container-app.bicep' = {
  name: 'container-app'
  scope: rg
  params: {
    name: names.containerApp
    location: location
    tags: union(tags, {
      'azd-service-name': serviceName
    })
    exists: threadwiseExists
    environmentId: containerAppsEnvironment.outputs.id
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    tenantId: tenant().tenantId
    registryLoginServer: registry.outputs.loginServer
    targetPort: targetPort
    cpu: containerCpu
    memory: containerMemory
    minReplicas: minReplicas
    maxReplicas: maxReplicas
    httpConcurrentRequests: httpConcurrentRequests
    openAiEndpoint: openAi.outputs.endpoint
    openAiDeploymentName: openAi.outputs.deploymentName
    openAiModelName: openAi.outputs.modelName
    redisUrl: redis.outputs.redisUrl
    redisUrlSecretUri: redis.outputs.redisUrlSecretUri
    redisCluster: redis.outputs.cluster
    redisAuth: redisAuth
    slackBotTokenSecretUri: keyVault.outputs.slackBotTokenSecretUri
    slackSigningSecretSecretUri: keyVault.outputs.slackSigningSecretSecretUri
    botAdmins: botAdmins
    logLevel: logLevel
    tokenLimit: tokenLimit
    maxResponseTokens: maxResponseTokens
  }
}

module bot 'modules/bot.bicep' = {
  name: 'bot'
  scope: rg
  params: {
    name: names.bot
    tags: tags
    sku: botSku
    displayName: botDisplayName
    messagingEndpoint: '${app.outputs.uri}/api/messages'
    msaAppId: identity.outputs.clientId
    msaAppMSIResourceId: identity.outputs.id
    tenantId: tenant().tenantId
  }
}

module availabilityTest 'modules/availability-test.bicep' = {
  name: 'availability-test'
  scope: rg
  params: {
    name: names.availabilityTest
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    url: '${app.outputs.uri}/readyz'
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in .azure/<environment>/.env)
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name

// azd pushes the image here and deploys it to the container app tagged azd-service-name.
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_APPS_ENVIRONMENT_NAME string = containerAppsEnvironment.outputs.name
output SERVICE_THREADWISE_NAME string = app.outputs.name
output SERVICE_THREADWISE_URI string = app.outputs.uri

// Paste into the Slack app manifest (event subscriptions request URL, slash command URL).
output SLACK_EVENTS_URL string = '${app.outputs.uri}/slack/events'
// The Azure Bot already points here; the Teams app manifest's bots[].botId is MICROSOFT_APP_ID.
output TEAMS_MESSAGING_ENDPOINT string = '${app.outputs.uri}/api/messages'
output MICROSOFT_APP_ID string = identity.outputs.clientId
output MICROSOFT_APP_TENANT_ID string = tenant().tenantId
output AZURE_BOT_NAME string = bot.outputs.name

output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT string = openAi.outputs.deploymentName
output AZURE_OPENAI_MODEL string = openAi.outputs.modelName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_REDIS_HOST string = redis.outputs.hostName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
