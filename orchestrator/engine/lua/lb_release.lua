-- Give back every place a box holds out of a budgeted load balancer, and wake every rollout
-- that has a box waiting for a place (each wakes once; its fill tries again).
-- KEYS: budget hash, wait set. ARGV: box ('' to only wake), out prefix, events prefix,
-- rollout hash prefix, stream maxlen.
local box, out_prefix, ev_prefix, rollout_prefix, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if box ~= '' then
  for _, lb in ipairs(redis.call('HKEYS', KEYS[1])) do
    local v = redis.call('HGET', out_prefix .. lb, box)
    if v then
      redis.call('HDEL', out_prefix .. lb, box)
      local r, _, ty = string.match(v, '^(%S+) (%S+) (%S+)$')
      if ty then
        local seq = redis.call('HINCRBY', out_prefix .. lb, '~seq', 1)
        redis.call('XADD', ev_prefix .. ty, 'MAXLEN', '~', maxlen, '*', 'rollout', r, 'box', box,
          'step', 'lb_budget', 'phase', 'end', 'outcome', 'released', 'reason', lb, 'seq', seq)
      end
    end
  end
end
local waiting = redis.call('SMEMBERS', KEYS[2])
redis.call('DEL', KEYS[2])
for _, r in ipairs(waiting) do
  if redis.call('EXISTS', rollout_prefix .. r) == 1 then
    redis.call('HSET', rollout_prefix .. r, 'lb_woken', '1')
  end
end
return waiting
