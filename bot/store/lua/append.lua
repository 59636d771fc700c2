-- Append a turn and trim the oldest whole messages until the total fits, keeping a user message
-- first. KEYS: history, total. ARGV: budget, ttl (s), messages... Returns how many were dropped.
local budget = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[2]) or '-1')
if total < 0 then
  total = 0
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(v, '^(%d+)'))
  end
end
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  total = total + tonumber(string.match(ARGV[i], '^(%d+)'))
end
local dropped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then
    total = 0
    break
  end
  if total <= budget and string.match(head, '^%d+\tuser\t') then break end
  redis.call('LPOP', KEYS[1])
  total = total - tonumber(string.match(head, '^(%d+)'))
  dropped = dropped + 1
end
if total > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], total, 'EX', ttl)
else
  redis.call('DEL', KEYS[2])
end
return dropped
