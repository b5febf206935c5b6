-- Undoes part of an admission: deletes KEYS[1] (the `queued` record of a lead whose
-- publish failed, or a claimed key given back), and the lock KEYS[2], when given, only if
-- ARGV[1] still holds it.
redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
