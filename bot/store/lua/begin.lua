-- Claim a post and queue for the lock in one round trip, subscribing or checking the
-- subscription in the same step.
-- KEYS: once, queue, leases, subscribed. ARGV: once ttl (s, or 0 = no marker), token,
-- lease (ms), subscribe ttl (s, or 0 = leave the subscription alone), 1 = only if subscribed
-- (else -2). Returns 1 held, 0 queued, -1 duplicate, -2 not subscribed.
-- The marker holds the claiming token, so running the script again with the same token (a retry
-- after a dropped connection) is not mistaken for a duplicate delivery.
if tonumber(ARGV[5]) > 0 and redis.call('EXISTS', KEYS[4]) == 0 then return -2 end
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
    if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
  end
end
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[4], '1', 'EX', ARGV[4]) end
return acquire(KEYS[2], KEYS[3], ARGV[2], tonumber(ARGV[3]))
