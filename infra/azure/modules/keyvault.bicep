// Key Vault in RBAC mode for the service's secrets. The app identity gets "Key Vault Secrets
// User"; the container app references secrets by versionless URI, so a new secret version is
// picked up without a redeploy (Container Apps refreshes references periodically; restart the
// revision to apply it at once). The redis-url secret is written by redis.bicep.

@description('Key Vault name: 3-24 characters, globally unique.')
param name string
@description('Region.')
param location string
@description('Tags.')
param tags object
@description('Principal id of the identity that reads the secrets.')
param secretsReaderPrincipalId string
@secure()
@description('SLACK_BOT_TOKEN. Empty: no secret, Slack disabled.')
param slackBotToken string = ''
@secure()
@description('SLACK_SIGNING_SECRET. Empty: no secret.')
param slackSigningSecret string = ''

var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var slackBotTokenSecretName = 'slack-bot-token'
var slackSigningSecretSecretName = 'slack-signing-secret'

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, secretsReaderPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: secretsReaderPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource slackBotTokenSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(slackBotToken)) {
  parent: vault
  name: slackBotTokenSecretName
  properties: {
    value: slackBotToken
    contentType: 'text/plain'
  }
}

resource slackSigningSecretSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(slackSigningSecret)) {
  parent: vault
  name: slackSigningSecretSecretName
  properties: {
    value: slackSigningSecret
    contentType: 'text/plain'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
// Versionless secret URIs ('' when the secret is not stored): vaultUri ends with '/'.
output slackBotTokenSecretUri string = !empty(slackBotToken) ? '${vault.properties.vaultUri}secrets/${slackBotTokenSecretName}' : ''
output slackSigningSecretSecretUri string = !empty(slackSigningSecret) ? '${vault.properties.vaultUri}secrets/${slackSigningSecretSecretName}' : ''
