-- Set or remove a scope's prompt and audit the change, with the old text, atomically.
-- KEYS: prompt, audit, audited scopes. ARGV: new text ('' with ARGV[3]=='reset' to delete),
-- record json (without old), action, keep, retention (s, 0 = by count only), now (s).
-- Records older than the retention are dropped from the list's tail. Returns the old text.
local old = redis.call('GET', KEYS[1])
if ARGV[3] == 'reset' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
local rec = cjson.decode(ARGV[2])
if old then rec['old'] = old else rec['old'] = cjson.null end
redis.call('LPUSH', KEYS[2], cjson.encode(rec))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call('SADD', KEYS[3], rec['scope'])
local retention = tonumber(ARGV[5] or '0')
if retention > 0 then
  local oldest = tonumber(ARGV[6]) - retention
  while true do
    local tail = redis.call('LINDEX', KEYS[2], -1)
    if not tail or cjson.decode(tail)['at'] >= oldest then break end
    redis.call('RPOP', KEYS[2])
  end
end
return old
