-- Leave the lock queue (held or waiting); releasing a token not in it is a no-op.
-- KEYS: queue, leases. ARGV: token.
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
