-- Write a folded summary if the lease is still ours, dropping the folded messages from the
-- head of the pending list (only ever appended to, so they are still its first `n`).
-- KEYS: pending, summary, lease. ARGV: lease token, n, summary, ttl (s). Returns 1 or 0.
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
redis.call('DEL', KEYS[3])
return 1
