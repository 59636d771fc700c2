-- Note a conversation in a person's index (for their data rights), dropping entries older than
-- the history TTL and past the newest ARGV[4].
-- KEYS: index (sorted set). ARGV: conversation, now, ttl, most kept.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
