-- The self-driving fill, run by the coordinator once and by every box's finish: record a
-- finishing box (once), halt beyond the failure budget, then start boxes up to the window.
-- Before the canary wave is done nothing past it starts (the barrier).
-- A box `deferred` (its load balancer's budget was spent) goes back to the front of pending,
-- uncounted; then nothing starts unless a release woke the rollout meanwhile (`lb_woken`):
-- the release that frees a place fills the rollout again.
-- KEYS: rollout hash, pending list, inflight set, done hash.
-- Once the canary wave is done, a rollout with `bake_s` bakes (with `bake_each`, after every
-- wave, each then a barrier): nothing starts until the heartbeat tick's gates end the bake
-- (engine/bake.py), which judges the boxes `bake_wave` (from:to in the order started) names.
-- ARGV: box, outcome, slot key prefix, slot ttl ms, why, the halted state, the baking state,
-- then the states in which boxes start (state.py's table).
local h, pending, inflight, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local box, outcome, slot_prefix, slot_ms, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local halted, baking = ARGV[6], ARGV[7]
local function moving(s)
  for i = 8, #ARGV do if s == ARGV[i] then return true end end
  return false
end
local hold = false
if box ~= '' and outcome == 'deferred' then
  if redis.call('SREM', inflight, box) == 0 then
    return {'dup', redis.call('HGET', h, 'state')}
  end
  redis.call('LPUSH', pending, box)
  redis.call('HINCRBY', h, 'scheduled', -1)
  hold = redis.call('HDEL', h, 'lb_woken') == 0
  box = ''
end
if box ~= '' then
  if redis.call('HSETNX', done, box, outcome) == 0 then
    return {'dup', redis.call('HGET', h, 'state')}
  end
  redis.call('SREM', inflight, box)
  if outcome == 'ok' then
    redis.call('HINCRBY', h, 'n_ok', 1)
  elseif outcome == 'cancelled' then
    redis.call('HINCRBY', h, 'n_cancelled', 1)
  else
    local failed = redis.call('HINCRBY', h, 'n_failed', 1)
    local budget = tonumber(redis.call('HGET', h, 'max_failed'))
    if failed > budget and moving(redis.call('HGET', h, 'state')) then
      redis.call('HSET', h, 'state', halted, 'halt_reason',
        'box ' .. box .. ' ' .. outcome .. ' (' .. failed .. ' failed, budget ' .. budget .. ')'
        .. (why ~= '' and (': ' .. why) or ''))
    end
  end
end
local state = redis.call('HGET', h, 'state')
local started = {}
if moving(state) and not hold then
  local canary = tonumber(redis.call('HGET', h, 'canary'))
  local batch = tonumber(redis.call('HGET', h, 'batch'))
  local scheduled = tonumber(redis.call('HGET', h, 'scheduled'))
  local window, limit = batch, -1
  local n_done = redis.call('HLEN', done)
  if n_done < canary then window, limit = canary, canary end
  local bake_s = tonumber(redis.call('HGET', h, 'bake_s') or '0')
  if bake_s > 0 and canary > 0 and n_done >= canary then
    local each = redis.call('HGET', h, 'bake_each') == '1'
    local wave_end = tonumber(redis.call('HGET', h, 'wave_end') or '-1')
    local baked = redis.call('HEXISTS', h, 'bake_until') == 1
    if each and baked then limit = wave_end end  -- every wave is a barrier, like the canary's
    if redis.call('SCARD', inflight) == 0 and redis.call('LLEN', pending) > 0
        and (not baked or (each and scheduled >= wave_end)) then
      local t = redis.call('TIME')
      local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
      local from = tonumber(redis.call('HGET', h, 'wave_from') or '0')
      redis.call('HDEL', h, 'bake_base')  -- each bake is judged from its own first counters
      redis.call('HSET', h, 'state', baking, 'bake_from', now, 'bake_until', now + bake_s,
        'bake_wave', from .. ':' .. scheduled, 'wave_from', scheduled,
        'wave_end', scheduled + batch)
      return {'bake', baking}
    end
  end
  while redis.call('SCARD', inflight) < window and (limit < 0 or scheduled < limit) do
    local nxt = redis.call('LPOP', pending)
    if not nxt then break end
    redis.call('SADD', inflight, nxt)
    redis.call('SET', slot_prefix .. nxt, 'scheduled', 'PX', slot_ms)
    scheduled = scheduled + 1
    table.insert(started, nxt)
  end
  redis.call('HSET', h, 'scheduled', scheduled)
  -- A box started after a release saw it: a wake from before is spent.
  if #started > 0 then redis.call('HDEL', h, 'lb_woken') end
end
local idle = redis.call('SCARD', inflight) == 0 and #started == 0
if idle and (redis.call('LLEN', pending) == 0 or not moving(state)) then
  return {'drained', state, unpack(started)}
end
return {'fill', state, unpack(started)}
