-- A fresh token for a box acting on its own (boot convergence): any later claim supersedes it.
-- KEYS: fencing hash, box owner hash. ARGV[1] a new epoch should the hash be gone, ARGV[2] the
-- owner (a boot id), ARGV[3] its kind: box, or rollout (valid while that rollout lives).
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then redis.call('HSET', KEYS[1], 'n', 0) end
local t = redis.call('HGET', KEYS[1], 'epoch') .. '.' .. redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'token', t, 'rollout', ARGV[2], 'kind', ARGV[3])
return t
