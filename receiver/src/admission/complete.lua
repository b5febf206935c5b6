-- Completes a claimed Idempotency-Key: stores the answer a retry gets, and gives up the
-- lock only if it is still this request's.
--
-- KEYS[1]: the key; KEYS[2]: its lock.
-- ARGV[1]: the answer to store; ARGV[2]: its TTL in ms; ARGV[3]: the lock's holder.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
