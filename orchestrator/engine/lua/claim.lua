-- Claim a box for a rollout: lease owner, rollout state and a fresh fencing token, at once.
-- KEYS: lease, rollout hash, fence counter, box token, the rollout's tokens hash.
-- ARGV[1] rollout id, ARGV[2] box id, ARGV[3..] the states in which a box may start (state.py).
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  return {0, 'the box type lease is held by ' .. (held or 'nobody') .. ', not this rollout'}
end
local state = redis.call('HGET', KEYS[2], 'state')
local moving = false
for i = 3, #ARGV do if state == ARGV[i] then moving = true end end
if not moving then return {0, 'the rollout is ' .. tostring(state)} end
local t = redis.call('HGET', KEYS[5], ARGV[2])
if t then return {1, t} end
t = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[4], t)
redis.call('HSET', KEYS[5], ARGV[2], t)
return {1, tostring(t)}
