-- Lease a conversation's summary and read its oldest pending messages within a token budget
-- (at least one). KEYS: pending, summary, lease. ARGV: lease token, lease (ms), budget.
-- Returns {0} when nothing is pending, {-1} when another replica holds the lease, else
-- {1, summary or '', messages...}.
if redis.call('LLEN', KEYS[1]) == 0 then return {0} end
if not redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return {-1} end
local budget = tonumber(ARGV[3])
local out = {1, redis.call('GET', KEYS[2]) or ''}
local total = 0
local lo = 0
while true do
  local items = redis.call('LRANGE', KEYS[1], lo, lo + 63)
  if #items == 0 then return out end
  for _, v in ipairs(items) do
    local cost = tonumber(string.match(v, '^(%d+)'))
    if #out > 2 and total + cost > budget then return out end
    total = total + cost
    out[#out + 1] = v
  end
  lo = lo + 64
end
