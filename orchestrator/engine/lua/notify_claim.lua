-- Claim one lifecycle event of a rollout for one notifier. KEYS[1] notified:<rollout>;
-- ARGV[1] event, ARGV[2] notifier id, ARGV[3] now (s), ARGV[4] claim TTL (s).
-- 1: claimed (new, or a claim older than the TTL: its notifier died); 0: done or held.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then
  if v == 'done' then return 0 end
  local at = tonumber(string.match(v, ' ([%d.]+)$'))
  if at and tonumber(ARGV[3]) - at < tonumber(ARGV[4]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], 'claimed ' .. ARGV[2] .. ' ' .. ARGV[3])
return 1
