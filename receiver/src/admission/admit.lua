-- Admits up to n requests of one subject against its sliding-window limit, in one call:
-- every limit of the receiver (a token's leads, a token's reads, an address's failed
-- authentications) is this script; a single request is n = 1.
--
-- KEYS[1]: the subject's sorted set of counted requests (score: Redis time in µs).
-- KEYS[2], KEYS[3]: the Idempotency-Key and its lock (when there is no key, KEYS[1] again).
-- KEYS[4..]: the `queued` record keys of the requests that have a record, in input order.
-- ARGV[1]: the limit; ARGV[2]: the window in ms; ARGV[3]: a member prefix unique to the call;
-- ARGV[4]: n.
-- ARGV[5]: what is done with the key: '' nothing (no key), 'look' looked up only, 'claim'
-- looked up and, when at least one request is admitted, claimed.
-- ARGV[6]: the value a claim sets on the key (a key already holding it is this request's
-- own retry, and is claimed again); ARGV[7]: its TTL in ms.
-- ARGV[8]: the lock's holder; ARGV[9]: its TTL in ms.
-- ARGV[10]: the records' TTL in s; ARGV[10 + i]: request i's record ('' for none).
--
-- Returns {2, value} when an earlier request holds the key ('pending:' while its lock is
-- held); else {1, admitted, remaining, wait in µs until the oldest counted request leaves
-- the window (when `remaining` next grows), Redis time in µs, then for each refused request
-- in order (at most `limit` of them) the wait in µs until it would be admitted}.
--
-- The first `admitted` requests are counted; the rest are not. So no window, wherever it
-- starts, ever holds more than `limit` admitted requests, and a refused request's wait is
-- exact: until the counted request that must leave for it to fit does.
local limit = tonumber(ARGV[1])
if limit < 1 then return redis.error_reply('the limit must be at least 1') end
local mode = ARGV[5]
if mode ~= '' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {2, 'pending:'} end
  local v = redis.call('GET', KEYS[2])
  if v and v ~= ARGV[6] then return {2, v} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2]) * 1000
local n = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local admit = math.max(0, math.min(n, limit - count))
local k = 3
for i = 1, admit do
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i)
  local record = ARGV[10 + i]
  if record ~= '' then
    k = k + 1
    redis.call('SET', KEYS[k], record, 'EX', ARGV[10])
  end
end
if admit > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if mode == 'claim' then
    redis.call('SET', KEYS[2], ARGV[6], 'PX', ARGV[7])
    redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[9])
  end
end
local total = count + admit
local reply = {1, admit, math.max(0, limit - total), 0, now}
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reply[4] = tonumber(oldest[2]) + window - now end
local refused = math.min(n - admit, limit)
if refused > 0 then
  local first = math.max(0, total - limit)
  local scores = redis.call('ZRANGE', KEYS[1], first, first + refused - 1, 'WITHSCORES')
  for j = 2, #scores, 2 do reply[#reply + 1] = tonumber(scores[j]) + window - now end
end
return reply
