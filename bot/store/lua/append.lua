-- Append a turn and trim the oldest whole messages until the total fits, keeping a user message
-- first. With summaries on, the `fold` oldest messages (left out of this turn's prompt) and
-- whatever trimming drops move to the pending list instead of being deleted, in this one
-- script, so no message is both gone from the history and missing from the summary's queue.
-- KEYS: history, total, pending. ARGV: budget, ttl (s), keep dropped (0/1), fold, pending cap,
-- messages... Returns how many left the history.
local budget = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local keep = ARGV[3] == '1'
local fold = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local total = tonumber(redis.call('GET', KEYS[2]) or '-1')
if total < 0 then
  total = 0
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(v, '^(%d+)'))
  end
end
local dropped = 0
local function drop(head)
  redis.call('LPOP', KEYS[1])
  total = total - tonumber(string.match(head, '^(%d+)'))
  dropped = dropped + 1
  if keep then redis.call('RPUSH', KEYS[3], head) end
end
while dropped < fold do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  drop(head)
end
for i = 6, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  total = total + tonumber(string.match(ARGV[i], '^(%d+)'))
end
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then
    total = 0
    break
  end
  if total <= budget and string.match(head, '^%d+\tuser\t') then break end
  drop(head)
end
if total > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], total, 'EX', ttl)
else
  redis.call('DEL', KEYS[2])
end
if keep and dropped > 0 then
  redis.call('LTRIM', KEYS[3], -cap, -1)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return dropped
