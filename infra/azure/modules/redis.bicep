// Azure Managed Redis (Microsoft.Cache/redisEnterprise) with one database, TLS only on port
// 10000, and the URL the service reads as REDIS_URL.
//
// Clustering policy (see ../README.md for when to pick which):
// - OSSCluster (default): the database speaks the OSS cluster protocol; the service runs with
//   REDIS_CLUSTER=true and talks to every shard directly (best throughput, no proxy hop).
// - EnterpriseCluster: one proxied endpoint that routes commands itself; the service runs with
//   REDIS_CLUSTER=false and its ordinary client.
// Either way multi-key commands and Lua scripts keep their keys in one hash slot: every key of
// one conversation shares a {hash tag}.
//
// Authentication (REDIS_AUTH):
// - entra (default): access keys are off; an access policy assignment lets the app's managed
//   identity in with its Microsoft Entra token as the password (user: its object id), which the
//   service fetches and renews itself. REDIS_URL holds no secret, so nothing goes to Key Vault.
// - password: access keys on, and rediss://:<key>@host:10000/0 is stored in Key Vault.

@description('Cluster name (becomes <name>.<region>.redis.azure.net).')
param name string
@description('Region.')
param location string
@description('Tags.')
param tags object
@description('SKU, e.g. Balanced_B0, Balanced_B1, MemoryOptimized_M10, ComputeOptimized_X3.')
param skuName string = 'Balanced_B0'
@description('Replicate the data set across nodes.')
param highAvailability bool = true
@allowed([
  'AllKeysLFU'
  'AllKeysLRU'
  'AllKeysRandom'
  'NoEviction'
  'VolatileLFU'
  'VolatileLRU'
  'VolatileRandom'
  'VolatileTTL'
])
// NoEviction: every key that could be evicted has a TTL already (history, the exactly-once
// markers, the conversation locks), and the volatile policies would pick exactly those under
// memory pressure: a dropped marker answers a redelivered post twice, a dropped lock lets two
// replicas answer one thread at once. A full database refuses writes instead, which the service
// turns into a short apology, and `threadwise doctor` and /readyz warn about any other policy.
@description('Redis eviction policy. Keep NoEviction: the volatile policies evict the exactly-once markers and locks before their TTL.')
param evictionPolicy string = 'NoEviction'
@allowed([
  'OSSCluster'
  'EnterpriseCluster'
])
@description('OSSCluster: clients talk to every shard (REDIS_CLUSTER=true). EnterpriseCluster: one proxied endpoint.')
param clusteringPolicy string = 'OSSCluster'
@allowed([
  'entra'
  'password'
])
@description('entra: the managed identity signs in with its Entra token, access keys off. password: an access key in Key Vault.')
param auth string = 'entra'
@description('Object (principal) id of the managed identity that may use the database (entra).')
param appPrincipalId string
@description('Key Vault that receives the redis-url secret (password auth only).')
param keyVaultName string
@description('Name of the Key Vault secret holding REDIS_URL.')
param redisUrlSecretName string = 'redis-url'

// The only port Azure Managed Redis serves; TLS is mandatory with clientProtocol Encrypted.
var redisPort = 10000

resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability ? 'Enabled' : 'Disabled'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: cluster
  // Azure Managed Redis has exactly one database and it must be called "default".
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: redisPort
    clusteringPolicy: clusteringPolicy
    evictionPolicy: evictionPolicy
    accessKeysAuthentication: auth == 'entra' ? 'Disabled' : 'Enabled'
  }
}

// The app's identity may use the database with the built-in 'default' access policy (all
// commands and keys); its Entra token is the password, its object id the user name.
resource appAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = if (auth == 'entra') {
  parent: database
  name: 'threadwiseapp'
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: appPrincipalId
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

// rediss:// = TLS. The key is percent-encoded because access keys may contain '/', '+' and
// '='; redis-py's from_url() decodes the password again.
resource redisUrlSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (auth == 'password') {
  parent: vault
  name: redisUrlSecretName
  properties: {
    value: 'rediss://:${uriComponent(database.listKeys().primaryKey)}@${cluster.properties.hostName}:${redisPort}/0'
    contentType: 'text/plain'
  }
}

output hostName string = cluster.properties.hostName
output port int = redisPort
// entra: the URL itself (no secret in it); password: the Key Vault secret holding it.
output redisUrl string = auth == 'entra' ? 'rediss://${cluster.properties.hostName}:${redisPort}/0' : ''
output redisUrlSecretUri string = auth == 'password' ? '${vault.properties.vaultUri}secrets/${redisUrlSecretName}' : ''
output cluster bool = clusteringPolicy == 'OSSCluster'
