-- The FIFO lock, shared by begin.lua and try.lua (prepended to each). Every waiter queues its
-- token in q and its lease deadline in l; the head holds the lock, and a head whose lease ran
-- out (a crashed replica) is dropped, so a dead holder blocks a conversation for one lease.
local function acquire(q, l, tok, lease)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('HSET', l, tok, now + lease) == 1 then redis.call('RPUSH', q, tok) end
  redis.call('PEXPIRE', q, lease * 4)
  redis.call('PEXPIRE', l, lease * 4)
  while true do
    local head = redis.call('LINDEX', q, 0)
    if not head then
      redis.call('RPUSH', q, tok)
      head = tok
    end
    if head == tok then return 1 end
    local deadline = tonumber(redis.call('HGET', l, head) or '0')
    if deadline > now then return 0 end
    redis.call('LPOP', q)
    redis.call('HDEL', l, head)
  end
end
