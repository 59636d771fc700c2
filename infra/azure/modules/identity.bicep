// The service's one identity: pulls images from the registry, reads Key Vault secrets, calls
// Azure OpenAI (AZURE_CLIENT_ID) and is the Teams bot's app identity (MICROSOFT_APP_ID with
// MICROSOFT_APP_TYPE=UserAssignedMSI).

@description('User-assigned managed identity name.')
param name string
@description('Region.')
param location string
@description('Tags.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
