-- Newest messages within a budget, read backwards in chunks: the cost follows what fits, not
-- how long the stored list is. The result starts with a user message (bot.trimming.fit_newest
-- is the same rule in Python). KEYS: history. ARGV: budget.
local budget = tonumber(ARGV[1])
local n = redis.call('LLEN', KEYS[1])
local out = {}
local total = 0
local hi = n - 1
local full = false
while hi >= 0 and not full do
  local lo = hi - 63
  if lo < 0 then lo = 0 end
  local items = redis.call('LRANGE', KEYS[1], lo, hi)
  for j = #items, 1, -1 do
    local cost = tonumber(string.match(items[j], '^(%d+)'))
    if total + cost > budget then
      full = true
      break
    end
    total = total + cost
    out[#out + 1] = items[j]
  end
  hi = lo - 1
end
local res = {}
local started = false
for j = #out, 1, -1 do
  if started or string.match(out[j], '^%d+\tuser\t') then
    started = true
    res[#res + 1] = out[j]
  end
end
return res
