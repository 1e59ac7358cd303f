-- End a rollout exactly once: whoever gets {1, final} runs the end of the rollout.
-- KEYS[1] the rollout hash. ARGV[1] now; then pairs: a state, the state it ends in (state.py's
-- table). An end of 'succeeded' becomes 'failed' when boxes failed within the budget, and
-- 'halted' when a box never started (its claim was refused: the lease was lost, or a pause
-- came first), so that `resume` can start it.
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then
  return {0, redis.call('HGET', KEYS[1], 'state')}
end
local state = redis.call('HGET', KEYS[1], 'state')
for i = 2, #ARGV, 2 do
  if state == ARGV[i] then
    local final = ARGV[i + 1]
    local cancelled = tonumber(redis.call('HGET', KEYS[1], 'n_cancelled') or '0')
    if final == 'succeeded' and cancelled > 0 then
      final = 'halted'  -- not every box runs the release: never 'succeeded'; resume starts them
      if not redis.call('HGET', KEYS[1], 'halt_reason') then
        redis.call('HSET', KEYS[1], 'halt_reason', cancelled .. ' box(es) never started: '
          .. 'their claim was refused (`orchestrator resume` starts them)')
      end
    elseif final == 'succeeded' and tonumber(redis.call('HGET', KEYS[1], 'n_failed') or '0') > 0 then
      final = 'failed'
    end
    redis.call('HSET', KEYS[1], 'state', final, 'ended', ARGV[1])
    return {1, final}
  end
end
return {0, tostring(state)}
