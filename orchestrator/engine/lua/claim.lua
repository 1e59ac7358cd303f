-- Claim a box for a rollout: lease owner, rollout state and a fresh fencing token, at once.
-- KEYS: lease, rollout hash, fencing hash, box owner hash, the rollout's tokens hash.
-- ARGV[1] rollout id, ARGV[2] box id, ARGV[3] a new epoch should the fencing hash be gone,
-- ARGV[4..] the states in which a box may start (state.py).
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  return {0, 'the box type lease is held by ' .. (held or 'nobody') .. ', not this rollout'}
end
local state = redis.call('HGET', KEYS[2], 'state')
local moving = false
for i = 4, #ARGV do if state == ARGV[i] then moving = true end end
if not moving then return {0, 'the rollout is ' .. tostring(state)} end
local t = redis.call('HGET', KEYS[5], ARGV[2])
if t then return {1, t} end
-- A fencing hash that is gone (a wipe, a failover) starts a new epoch: no token minted
-- before can ever equal one minted now.
if redis.call('HSETNX', KEYS[3], 'epoch', ARGV[3]) == 1 then redis.call('HSET', KEYS[3], 'n', 0) end
t = redis.call('HGET', KEYS[3], 'epoch') .. '.' .. redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'token', t, 'rollout', ARGV[1], 'kind', 'rollout')
redis.call('HSET', KEYS[5], ARGV[2], t)
return {1, t}
