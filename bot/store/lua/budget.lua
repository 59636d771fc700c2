-- Set or remove a dimension's daily token budget and audit the change, with the old value.
-- KEYS: budgets hash, audit list. ARGV: dimension, new value ('' to remove), record json
-- (without old), keep, retention (s, 0 = by count only), now (s). Returns the old value.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local rec = cjson.decode(ARGV[3])
if old then rec['old'] = old else rec['old'] = cjson.null end
redis.call('LPUSH', KEYS[2], cjson.encode(rec))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
local retention = tonumber(ARGV[5])
if retention > 0 then
  local oldest = tonumber(ARGV[6]) - retention
  while true do
    local tail = redis.call('LINDEX', KEYS[2], -1)
    if not tail or cjson.decode(tail)['at'] >= oldest then break end
    redis.call('RPOP', KEYS[2])
  end
end
return old
