-- Rewrite the audit records of one person so the change stays recorded but not who made it,
-- nor whom it was about. KEYS: audit lists. ARGV: who, replacement who, replacement name,
-- scope naming the person ('' = none), replacement scope. Returns records changed.
local changed = 0
for _, key in ipairs(KEYS) do
  local items = redis.call('LRANGE', key, 0, -1)
  for i, v in ipairs(items) do
    local rec = cjson.decode(v)
    local hit = false
    if rec['who'] == ARGV[1] then
      rec['who'] = ARGV[2]
      rec['who_name'] = ARGV[3]
      hit = true
    end
    if ARGV[4] ~= '' and rec['scope'] == ARGV[4] then
      rec['scope'] = ARGV[5]
      hit = true
    end
    if hit then
      redis.call('LSET', key, i - 1, cjson.encode(rec))
      changed = changed + 1
    end
  end
end
return changed
