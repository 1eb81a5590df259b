-- HeTu: commit one transaction atomically (see docs/architecture.md "Commit script").
-- KEYS: every row, index and extras key the transaction touches (one hash tag).
-- ARGV[1..10]: ack key#, ack group, ack id, reply channel, reply, reply-cache key#,
--              cache ttl s, changes key#, changes maxlen, change payload ("#" 0 = none)
-- ARGV[11..]: sections, each "count" then items:
--   checks  (key#, version or "" for absent)   stale read -> {3, key#}
--   absent  (key#, lo, hi)  index range read as empty      -> {3, key#}
--   unique  (key#, lo, hi, n, n allowed members)           -> {4, i}
--   del     (key#)
--   hset    (key#, n, n values: field, value, ...)
--   zrem    (key#, n, n members)
--   zadd    (key#, n, n members)
-- Returns {1, change id or ""} or {2, cached reply} for a duplicate request.
local A = ARGV
local ack = tonumber(A[1])
local cache = tonumber(A[6])
if cache > 0 then
  local cached = redis.call('GET', KEYS[cache])
  if cached then
    if ack > 0 then
      redis.call('XACK', KEYS[ack], A[2], A[3])
      redis.call('XDEL', KEYS[ack], A[3])
    end
    return {2, cached}
  end
end

local p = 11
local n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  local v = redis.call('HGET', KEYS[tonumber(A[p])], '_version') or ''
  if v ~= A[p + 1] then return {3, tonumber(A[p])} end
  p = p + 2
end
n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  local k = tonumber(A[p])
  if #redis.call('ZRANGE', KEYS[k], A[p + 1], A[p + 2], 'BYLEX', 'LIMIT', 0, 1) > 0 then
    return {3, k}
  end
  p = p + 3
end
n = tonumber(A[p]); p = p + 1
for i = 1, n do
  local na = tonumber(A[p + 3])
  local allowed = {}
  for j = 1, na do allowed[A[p + 3 + j]] = true end
  local found = redis.call('ZRANGE', KEYS[tonumber(A[p])], A[p + 1], A[p + 2],
    'BYLEX', 'LIMIT', 0, na + 1)
  for _, m in ipairs(found) do
    if not allowed[m] then return {4, i} end
  end
  p = p + 4 + na
end

local writes = 0
n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  redis.call('DEL', KEYS[tonumber(A[p])])
  p = p + 1
end
writes = writes + n
n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  local c = tonumber(A[p + 1])
  redis.call('HSET', KEYS[tonumber(A[p])], unpack(A, p + 2, p + 1 + c))
  p = p + 2 + c
end
writes = writes + n
n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  local c = tonumber(A[p + 1])
  redis.call('ZREM', KEYS[tonumber(A[p])], unpack(A, p + 2, p + 1 + c))
  p = p + 2 + c
end
n = tonumber(A[p]); p = p + 1
for _ = 1, n do
  local c = tonumber(A[p + 1])
  local t = {}
  for j = 1, c do
    t[2 * j - 1] = 0
    t[2 * j] = A[p + 1 + j]
  end
  redis.call('ZADD', KEYS[tonumber(A[p])], unpack(t))
  p = p + 2 + c
end

-- An applied call leaves the stream: the stream holds only calls not yet done.
if ack > 0 then
  redis.call('XACK', KEYS[ack], A[2], A[3])
  redis.call('XDEL', KEYS[ack], A[3])
end
local change_id = ''
local changes = tonumber(A[8])
if changes > 0 and writes > 0 then
  change_id = redis.call('XADD', KEYS[changes], 'MAXLEN', '~', A[9], '*', 'm', A[10])
end
if cache > 0 then redis.call('SET', KEYS[cache], A[5], 'EX', A[7]) end
if A[4] ~= '' then redis.call('PUBLISH', A[4], A[5]) end
return {1, change_id}
