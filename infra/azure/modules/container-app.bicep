// The threadwise container app: external HTTPS ingress to port 3978, probes on /healthz
// (alive) and /readyz (Redis answers, settings valid), at least one replica, an HTTP
// concurrency scale rule, and every setting under its docs/spec.md section 6 name. Secrets come from
// Key Vault through the user-assigned identity; no secret value passes through this template.

@description('Container app name.')
param name string
@description('Region.')
param location string
@description('Tags; must include azd-service-name so azd deploys to this app.')
param tags object
@description('true once azd has deployed an image: keep it instead of the bootstrap image.')
param exists bool
@description('Image until azd deploys the real one (first provision only). It does not listen on targetPort, so that first revision reports "activation failed" until `azd deploy` replaces it.')
param bootstrapImage string = 'mcr.microsoft.com/azuredocs/containerapps-helloworld:latest'
@description('Container Apps environment resource id.')
param environmentId string
@description('User-assigned identity resource id (image pull, Key Vault references).')
param identityId string
@description('Client id of that identity: AZURE_CLIENT_ID and MICROSOFT_APP_ID.')
param identityClientId string
@description('Entra tenant of the bot identity: MICROSOFT_APP_TENANT_ID.')
param tenantId string
@description('Registry login server, e.g. crxxxx.azurecr.io.')
param registryLoginServer string
@description('Port the service listens on (PORT) and ingress targets.')
param targetPort int = 3978
@description('vCPU per replica.')
param cpu string = '0.5'
@description('Memory per replica.')
param memory string = '1Gi'
@minValue(1)
@description('Replicas that always run.')
param minReplicas int = 1
@minValue(1)
@maxValue(300)
@description('Most replicas.')
param maxReplicas int = 10
@minValue(1)
@description('Concurrent requests per replica before scaling out.')
param httpConcurrentRequests int = 20
@description('AZURE_OPENAI_ENDPOINT.')
param openAiEndpoint string
@description('AZURE_OPENAI_DEPLOYMENT.')
param openAiDeploymentName string
@description('AZURE_OPENAI_MODEL.')
param openAiModelName string
@description('REDIS_URL when it holds no secret (REDIS_AUTH=entra); empty: from redisUrlSecretUri.')
param redisUrl string = ''
@description('Versionless Key Vault URI of the REDIS_URL secret (password auth); empty: redisUrl.')
param redisUrlSecretUri string = ''
@description('REDIS_CLUSTER: the database uses the OSSCluster policy.')
param redisCluster bool = false
@description('REDIS_AUTH: entra or password.')
param redisAuth string = 'password'
@description('Versionless Key Vault URI of the SLACK_BOT_TOKEN secret; empty: not set.')
param slackBotTokenSecretUri string = ''
@description('Versionless Key Vault URI of the SLACK_SIGNING_SECRET secret; empty: not set.')
param slackSigningSecretSecretUri string = ''
@description('BOT_ADMINS; empty: not set.')
param botAdmins string = ''
@description('LOG_LEVEL.')
param logLevel string = 'INFO'
@description('TOKEN_LIMIT.')
param tokenLimit int = 16384
@description('MAX_RESPONSE_TOKENS.')
param maxResponseTokens int = 1024

resource existingApp 'Microsoft.App/containerApps@2025-01-01' existing = if (exists) {
  name: name
}

var image = exists ? existingApp.properties.template.containers[0].image : bootstrapImage

// Container Apps secret names (lowercase) -> Key Vault references read with the identity.
var redisSecrets = empty(redisUrlSecretUri) ? [] : [
  {
    name: 'redis-url'
    keyVaultUrl: redisUrlSecretUri
    identity: identityId
  }
]
var slackBotTokenSecrets = empty(slackBotTokenSecretUri) ? [] : [
  {
    name: 'slack-bot-token'
    keyVaultUrl: slackBotTokenSecretUri
    identity: identityId
  }
]
var slackSigningSecretSecrets = empty(slackSigningSecretSecretUri) ? [] : [
  {
    name: 'slack-signing-secret'
    keyVaultUrl: slackSigningSecretSecretUri
    identity: identityId
  }
]
var secrets = concat(redisSecrets, slackBotTokenSecrets, slackSigningSecretSecrets)

// Environment variables: names exactly as in docs/spec.md section 6
// (tests/infra/test_bicep.py checks).
var baseSettings = [
  {
    name: 'AZURE_OPENAI_ENDPOINT'
    value: openAiEndpoint
  }
  {
    name: 'AZURE_OPENAI_DEPLOYMENT'
    value: openAiDeploymentName
  }
  {
    name: 'AZURE_OPENAI_MODEL'
    value: openAiModelName
  }
  {
    // No AZURE_OPENAI_API_KEY: DefaultAzureCredential signs in as this managed identity.
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'REDIS_CLUSTER'
    value: redisCluster ? 'true' : 'false'
  }
  {
    name: 'REDIS_AUTH'
    value: redisAuth
  }
  {
    name: 'MICROSOFT_APP_ID'
    value: identityClientId
  }
  {
    name: 'MICROSOFT_APP_TYPE'
    value: 'UserAssignedMSI'
  }
  {
    name: 'MICROSOFT_APP_TENANT_ID'
    value: tenantId
  }
  {
    name: 'TOKEN_LIMIT'
    value: string(tokenLimit)
  }
  {
    name: 'MAX_RESPONSE_TOKENS'
    value: string(maxResponseTokens)
  }
  {
    name: 'PORT'
    value: string(targetPort)
  }
  {
    name: 'LOG_FORMAT'
    value: 'json'
  }
  {
    name: 'LOG_LEVEL'
    value: logLevel
  }
]
// Keyless (entra): the URL is plain configuration; with a password it comes from Key Vault.
var redisUrlSettings = empty(redisUrlSecretUri) ? [
  {
    name: 'REDIS_URL'
    value: redisUrl
  }
] : [
  {
    name: 'REDIS_URL'
    secretRef: 'redis-url'
  }
]
var adminSettings = empty(botAdmins) ? [] : [
  {
    name: 'BOT_ADMINS'
    value: botAdmins
  }
]
var slackBotTokenSettings = empty(slackBotTokenSecretUri) ? [] : [
  {
    name: 'SLACK_BOT_TOKEN'
    secretRef: 'slack-bot-token'
  }
]
var slackSigningSecretSettings = empty(slackSigningSecretSecretUri) ? [] : [
  {
    name: 'SLACK_SIGNING_SECRET'
    secretRef: 'slack-signing-secret'
  }
]
var settings = concat(baseSettings, redisUrlSettings, adminSettings, slackBotTokenSettings, slackSigningSecretSettings)

resource app 'Microsoft.App/containerApps@2025-01-01' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: targetPort
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registryLoginServer
          identity: identityId
        }
      ]
      secrets: secrets
    }
    template: {
      // SIGTERM first; `threadwise serve` finishes the replies in flight within this grace.
      terminationGracePeriodSeconds: 60
      containers: [
        {
          name: 'threadwise'
          image: image
          env: settings
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          probes: [
            {
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: targetPort
                scheme: 'HTTP'
              }
              initialDelaySeconds: 2
              periodSeconds: 6
              timeoutSeconds: 3
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
                scheme: 'HTTP'
              }
              periodSeconds: 15
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              // 503 while Redis is unreachable or settings are invalid: the replica gets no
              // traffic until /readyz answers 200 again; it is not restarted.
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
                scheme: 'HTTP'
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
              successThreshold: 1
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(httpConcurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
output uri string = 'https://${app.properties.configuration.ingress.fqdn}'
