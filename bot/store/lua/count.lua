-- Add to a hash's counters and keep the hash ARGV[1] more seconds: a turn's usage in one call.
-- KEYS: hash. ARGV: ttl, then field, amount pairs.
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
