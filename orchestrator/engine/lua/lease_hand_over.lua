-- From a parent rollout to its rollback, atomically. ARGV: parent, child, ttl ms.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
