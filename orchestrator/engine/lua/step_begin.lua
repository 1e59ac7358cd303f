-- Count an attempt at a step and, when the count is at most ARGV[2] (the step runs), append
-- its start event: one round trip where there were two.
-- KEYS[1] the journal hash, KEYS[2] the event stream.
-- ARGV: attempts field, most attempts, stream max length, then the event's field/value pairs.
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if n <= tonumber(ARGV[2]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
end
return n
