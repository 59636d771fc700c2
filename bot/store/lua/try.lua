-- Try again for the lock of a token already queued by begin.lua.
-- KEYS: queue, leases. ARGV: token, lease (ms).
return acquire(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))
