-- Extend a summary lease if it is still ours. KEYS: lease. ARGV: lease token, lease (ms).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
