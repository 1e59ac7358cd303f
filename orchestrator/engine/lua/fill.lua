-- The self-driving fill, run by the coordinator once and by every box's finish: record a
-- finishing box (once), halt beyond the failure budget, then start boxes up to the window.
-- Before the canary wave is done nothing past it starts (the barrier).
-- A box `deferred` (its load balancer's budget was spent) goes back to the front of pending,
-- uncounted; then nothing starts unless a release woke the rollout meanwhile (`lb_woken`):
-- the release that frees a place fills the rollout again.
-- KEYS: rollout hash, pending list, inflight set, done hash.
-- ARGV: box, outcome, slot key prefix, slot ttl ms, why, the halted state, then the states in
-- which boxes start (state.py's table).
local h, pending, inflight, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local box, outcome, slot_prefix, slot_ms, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local halted = ARGV[6]
local function moving(s)
  for i = 7, #ARGV do if s == ARGV[i] then return true end end
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
  if redis.call('HLEN', done) < canary then window, limit = canary, canary end
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
