// Azure Bot registration for Teams. Its app identity is the user-assigned managed identity
// (msaAppType UserAssignedMSI): no app password exists anywhere. Messages go to
// https://<app fqdn>/api/messages.

@description('Azure Bot resource name (globally unique).')
param name string
@description('Tags.')
param tags object
@allowed([
  'F0'
  'S1'
])
@description('Pricing tier.')
param sku string = 'F0'
@description('Display name.')
param displayName string
@description('Messaging endpoint: https://<app fqdn>/api/messages.')
param messagingEndpoint string
@description('Client id of the user-assigned identity (MICROSOFT_APP_ID).')
param msaAppId string
@description('Resource id of the user-assigned identity.')
param msaAppMSIResourceId string
@description('Tenant of the identity (MICROSOFT_APP_TENANT_ID).')
param tenantId string

resource bot 'Microsoft.BotService/botServices@2022-09-15' = {
  name: name
  location: 'global'
  tags: tags
  kind: 'azurebot'
  sku: {
    name: sku
  }
  properties: {
    displayName: displayName
    endpoint: messagingEndpoint
    msaAppId: msaAppId
    msaAppType: 'UserAssignedMSI'
    msaAppMSIResourceId: msaAppMSIResourceId
    msaAppTenantId: tenantId
  }
}

resource teams 'Microsoft.BotService/botServices/channels@2022-09-15' = {
  parent: bot
  name: 'MsTeamsChannel'
  location: 'global'
  properties: {
    channelName: 'MsTeamsChannel'
    properties: {
      isEnabled: true
      acceptedTerms: true
    }
  }
}

output name string = bot.name
output teamsChannelName string = teams.name
