-- Record a step's result: the first write wins, except over a `deferred` one (the box went
-- back to pending; its next chain's results replace it). A deferred result replaces nothing.
-- KEYS[1] the journal hash. ARGV: field, result JSON, '1' if deferred, ttl seconds.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or (ARGV[3] == '0' and cjson.decode(cur)['outcome'] == 'deferred') then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  cur = ARGV[2]
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return cur
