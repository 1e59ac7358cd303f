-- Reserve a box's places out of its load balancers, all or none (one budget per load balancer,
-- across box types). A place is held while its holder's slot lives and its token is still the
-- box's: a reaped, revoked or superseded holder's place is given back here, and said so.
-- KEYS: budget hash (lb key -> max_out), wait set, then one `lbout:` hash per load balancer.
-- ARGV: box, rollout, token, box type, slot prefix, owner prefix, events prefix, stream maxlen,
-- then the load balancer keys (in KEYS' order).
local box, rollout, token, btype = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local slot_prefix, owner_prefix, ev_prefix, maxlen = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local function event(out_key, stream_type, r, b, outcome, reason)
  local seq = redis.call('HINCRBY', out_key, '~seq', 1)
  redis.call('XADD', ev_prefix .. stream_type, 'MAXLEN', '~', maxlen, '*', 'rollout', r,
    'box', b, 'step', 'lb_budget', 'phase', 'end', 'outcome', outcome, 'reason', reason,
    'seq', seq)
end
-- Only a rollout's box in flight (it has a slot) spends a budget: a boot chain does not.
if redis.call('EXISTS', slot_prefix .. rollout .. ':' .. box) == 0 then return {'unbudgeted'} end
local plan = {}
for i = 3, #KEYS do
  local out_key, lb = KEYS[i], ARGV[6 + i]
  local max = tonumber(redis.call('HGET', KEYS[1], lb))
  if max then
    local held = redis.call('HGETALL', out_key)
    local holders = {}
    for j = 1, #held, 2 do
      local b, v = held[j], held[j + 1]
      if b ~= box and string.sub(b, 1, 1) ~= '~' then  -- this box's own place (a redelivered leave) is taken again below
        local r, t, ty = string.match(v, '^(%S+) (%S+) (%S+)$')
        local live = r ~= nil and redis.call('EXISTS', slot_prefix .. r .. ':' .. b) == 1
          and redis.call('HGET', owner_prefix .. b, 'token') == t
        if live then
          table.insert(holders, b)
        else
          redis.call('HDEL', out_key, b)
          event(out_key, ty or btype, r or '', b, 'released', lb .. ': its holder is gone (slot or token)')
        end
      end
    end
    if #holders >= max then
      redis.call('SADD', KEYS[2], rollout)
      local why = lb .. ' full: ' .. #holders .. '/' .. max .. ' out (' ..
        table.concat(holders, ', ') .. ')'
      event(out_key, btype, rollout, box, 'full', why)
      return {'full', why}
    end
    table.insert(plan, {out_key, lb, #holders + 1, max})
  end
end
for _, p in ipairs(plan) do
  redis.call('HSET', p[1], box, rollout .. ' ' .. token .. ' ' .. btype)
  event(p[1], btype, rollout, box, 'reserved', p[2] .. ' ' .. p[3] .. '/' .. p[4])
end
return {'reserved', tostring(#plan)}
