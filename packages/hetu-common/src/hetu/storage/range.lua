-- HeTu: read an index range and its rows in one round trip.
-- KEYS[1]: index zset. ARGV: min, max (BYLEX), "1" for descending, limit (-1: all),
-- row key prefix. The row keys share KEYS[1]'s hash tag (same cluster slot).
-- Returns {member, {field, value, ...}} per row, in index order.
local lo, hi = ARGV[1], ARGV[2]
local members
if ARGV[3] == '1' then
  members = redis.call('ZRANGE', KEYS[1], hi, lo, 'BYLEX', 'REV', 'LIMIT', 0, ARGV[4])
else
  members = redis.call('ZRANGE', KEYS[1], lo, hi, 'BYLEX', 'LIMIT', 0, ARGV[4])
end

-- The id is the member's last 8 bytes: big-endian int64 + 2^63. Lua numbers are
-- doubles, so convert to decimal with 16-bit limbs.
local function id_of(m)
  local n = #m
  local b = {string.byte(m, n - 7, n)}
  local l = {b[1] * 256 + b[2], b[3] * 256 + b[4], b[5] * 256 + b[6], b[7] * 256 + b[8]}
  local sign = ''
  if l[1] >= 32768 then
    l[1] = l[1] - 32768
  else -- negative: magnitude = 2^63 - encoded
    sign = '-'
    local borrow = 0
    for i = 4, 1, -1 do
      local top = (i == 1) and 32768 or 0
      local v = top - l[i] - borrow
      if v < 0 then v = v + 65536; borrow = 1 else borrow = 0 end
      l[i] = v
    end
  end
  local digits = {}
  repeat
    local rem, nonzero = 0, false
    for i = 1, 4 do
      local cur = rem * 65536 + l[i]
      l[i] = math.floor(cur / 10)
      rem = cur % 10
      if l[i] > 0 then nonzero = true end
    end
    digits[#digits + 1] = rem
  until not nonzero
  local s = {}
  for i = #digits, 1, -1 do s[#s + 1] = digits[i] end
  return sign .. table.concat(s)
end

local out = {}
for i, m in ipairs(members) do
  out[i] = {m, redis.call('HGETALL', ARGV[5] .. id_of(m))}
end
return out
