-- May the chain holding token ARGV[1] act on the box now? KEYS[1] the box owner hash;
-- ARGV[2] the key prefix of rollout hashes. Returns '' (yes) or why not.
local token, rollout, kind = unpack(redis.call('HMGET', KEYS[1], 'token', 'rollout', 'kind'))
if not token then return 'was revoked or lost' end
if token ~= ARGV[1] then return 'is now ' .. token end
if kind == 'rollout' then
  local key = ARGV[2] .. rollout
  if redis.call('EXISTS', key) == 0 then return 'belongs to rollout ' .. rollout .. ', which is gone' end
  if redis.call('HEXISTS', key, 'ended') == 1 then return 'belongs to rollout ' .. rollout .. ', which has ended' end
end
return ''
