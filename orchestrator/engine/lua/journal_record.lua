-- Record a step's result: the first write wins, except over a `deferred` one (the box went
-- back to pending; its next chain's results replace it). A deferred result replaces nothing.
-- KEYS[1] the journal hash; KEYS[2] (optional) the event stream for the step's end event.
-- ARGV: field, result JSON, '1' if deferred, ttl seconds; with KEYS[2]: the stream's max
-- length, then the event's field/value pairs (outcome, reason, duration are added here, from
-- the recorded result).
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or (ARGV[3] == '0' and cjson.decode(cur)['outcome'] == 'deferred') then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  cur = ARGV[2]
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
if KEYS[2] then
  local r = cjson.decode(cur)
  local ev = {}
  for i = 6, #ARGV do ev[#ev + 1] = ARGV[i] end
  ev[#ev + 1] = 'outcome'
  ev[#ev + 1] = r['outcome']
  ev[#ev + 1] = 'reason'
  ev[#ev + 1] = r['reason']
  ev[#ev + 1] = 'duration'
  ev[#ev + 1] = string.format('%.3f', r['ended'] - r['started'])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(ev))
end
return cur
