-- Remove one user's messages (theirs and the replies to them: both carry the user after the
-- \30 mark in the name field) from a history, then drop leading non-user messages so it still
-- starts with a user message, and rewrite the running total. KEYS: history, total.
-- ARGV: user, ttl (s). Returns how many messages were removed.
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local keep = {}
local removed = 0
local total = 0
for _, v in ipairs(items) do
  local user = string.match(v, '^%d+\t[^\t]*\t[^\t\30]*\30([^\t]*)\t')
  if user == ARGV[1] then
    removed = removed + 1
  elseif #keep > 0 or string.match(v, '^%d+\tuser\t') then
    keep[#keep + 1] = v
    total = total + tonumber(string.match(v, '^(%d+)'))
  else
    removed = removed + 1
  end
end
if removed == 0 then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if #keep > 0 then
  for i = 1, #keep, 500 do
    redis.call('RPUSH', KEYS[1], unpack(keep, i, math.min(i + 499, #keep)))
  end
  if ttl <= 0 then ttl = tonumber(ARGV[2]) * 1000 end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], total, 'PX', ttl)
end
return removed
