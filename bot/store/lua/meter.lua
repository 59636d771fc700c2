-- Budgets and the rate limit, read in the load round trip (bot/store/meters.py `check` is the
-- same rule in Python). KEYS: usage hash of today, budgets hash, the user's rate counter of
-- this minute. ARGV: rate limit (0 = off), rate ttl (s), then dimension, default budget pairs.
-- Returns {over (index of the first dimension over budget, 0 = none), limited (0/1),
-- used1, budget1, used2, budget2, ...}. A slot of the minute is taken only when admitted.
local limit = tonumber(ARGV[1])
local out = {0, 0}
local over = 0
local n = (#ARGV - 2) / 2
for i = 1, n do
  local dim = ARGV[1 + 2 * i]
  local budget = tonumber(redis.call('HGET', KEYS[2], dim) or ARGV[2 + 2 * i])
  local used = tonumber(redis.call('HGET', KEYS[1], dim .. '|prompt') or '0')
    + tonumber(redis.call('HGET', KEYS[1], dim .. '|completion') or '0')
  out[#out + 1] = used
  out[#out + 1] = budget
  if over == 0 and budget > 0 and used >= budget then over = i end
end
out[1] = over
if over == 0 and limit > 0 then
  local count = tonumber(redis.call('GET', KEYS[3]) or '0')
  if count >= limit then
    out[2] = 1
  else
    redis.call('INCR', KEYS[3])
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
  end
end
return out
