-- Revoke a box's token if the rollout ARGV[1] still owns the box (it was counted dead): a
-- worker that wakes up later finds no token of its own and stops. KEYS[1] box owner hash.
if redis.call('HGET', KEYS[1], 'rollout') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
