-- Move a rollout to ARGV[1] only from one of the ARGV[3 .. 2+ARGV[2]] states (state.py's
-- table), setting the field/value pairs that follow and deleting `ended` if ARGV[2+n+1] is 1.
-- KEYS[1] the rollout hash ('' is a rollout not recorded yet).
-- Returns {1, state before} or {0, state now}.
local state = redis.call('HGET', KEYS[1], 'state') or ''
local n = tonumber(ARGV[2])
local allowed = false
for i = 3, 2 + n do if state == ARGV[i] then allowed = true end end
if not allowed then return {0, tostring(state)} end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
if ARGV[3 + n] == '1' then redis.call('HDEL', KEYS[1], 'ended') end
for i = 4 + n, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return {1, tostring(state)}
