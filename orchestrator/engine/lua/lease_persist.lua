-- Only the owner makes the lease permanent (paused, rollback-pending). KEYS[1] lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PERSIST', KEYS[1]) end
return 0
