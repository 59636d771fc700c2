-- Set or remove a scope's prompt and audit the change, with the old text, atomically.
-- KEYS: prompt, audit. ARGV: new text ('' with ARGV[3]=='reset' to delete), record json
-- (without old), action, keep. Returns the old text.
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
return old
