// Azure Managed Redis (Microsoft.Cache/redisEnterprise) with one database, TLS only on port
// 10000, and the connection URL the service reads as REDIS_URL stored in Key Vault.
//
// Clustering policy EnterpriseCluster: the cluster presents one endpoint and routes commands
// itself, so the service's ordinary (non-cluster) redis client works unchanged. Multi-key
// commands and Lua scripts must still keep their keys in one hash slot; every key of one
// conversation shares a {hash tag}, which guarantees that.
//
// Authentication is by access key, because the service authenticates with the password in
// REDIS_URL. Microsoft Entra ID for Redis needs the client to fetch and renew a token as the
// password and re-authenticate before it expires; see ../README.md.

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
@description('Key Vault that receives the redis-url secret.')
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
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: evictionPolicy
    accessKeysAuthentication: 'Enabled'
  }
}

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

// rediss:// = TLS. The key is percent-encoded because access keys may contain '/', '+' and
// '='; redis-py's from_url() decodes the password again.
resource redisUrlSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  parent: vault
  name: redisUrlSecretName
  properties: {
    value: 'rediss://:${uriComponent(database.listKeys().primaryKey)}@${cluster.properties.hostName}:${redisPort}/0'
    contentType: 'text/plain'
  }
}

output hostName string = cluster.properties.hostName
output port int = redisPort
output redisUrlSecretUri string = '${vault.properties.vaultUri}secrets/${redisUrlSecret.name}'
