"""The Lua scripts the Redis bridge runs, as text: joins that check ``max_members``
against live nodes only, member listings that drop the members of dead nodes, and a
history room's broadcast (positioned, kept in the room's stream and published in one
step) and the reading back of its stream.

Owns the scripts and the one expression they read a member record's node with
(``LUA_MEMBER_NODE``, built from ``NODE_ID_LENGTH``, the same constant connection ids
and member records use). Does not run them (``bridge.py`` and ``socketspec.Emitter`` do).
"""

from __future__ import annotations

from socketspec.cluster.addresses import NODE_ID_LENGTH

# The node of the member record held in the Lua variable ``value``, as the scripts read it.
LUA_MEMBER_NODE = f"string.sub(value, 1, {NODE_ID_LENGTH})"

# The members of live nodes in a room's hash (conn_id, value, ...); the others are deleted.
# A member's value starts with its node's id, whose liveness key is prefix .. id.
LIVE_ENTRIES = (
    """
local function live_entries(key, prefix)
  local entries = redis.call('HGETALL', key)
  local alive = {}
  local out = {}
  for i = 1, #entries, 2 do
    local value = entries[i + 1]
    local node = """
    + LUA_MEMBER_NODE
    + """
    local live = alive[node]
    if live == nil then
      live = redis.call('EXISTS', prefix .. node) == 1
      alive[node] = live
    end
    if live then
      out[#out + 1] = entries[i]
      out[#out + 1] = entries[i + 1]
    else
      redis.call('HDEL', key, entries[i])
    end
  end
  return out
end
"""
)

# KEYS[1] the room's hash; ARGV: conn_id, value, max_members, node key prefix.
# A member already recorded elsewhere (a connection recovered on another node or shard
# under its id) is recorded where it is now.
JOIN_SCRIPT = (
    LIVE_ENTRIES
    + """
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known then
  if known ~= ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
  return 'already'
end
local max = tonumber(ARGV[3])
if max > 0 and #live_entries(KEYS[1], ARGV[4]) / 2 >= max then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'joined'
"""
)

# KEYS[1] the room's hash; ARGV[1] the node key prefix.
# Also run by socketspec.Emitter, which lists members from Redis.
MEMBERS_SCRIPT = LIVE_ENTRIES + "return live_entries(KEYS[1], ARGV[1])\n"

# One broadcast to a room with history, positioned by Redis so that every node sees the
# room's messages in one order. KEYS: the room's epoch key, offset key, stream, channel.
# ARGV: [1] a fresh epoch (``history.new_epoch()``, used when the room has none: a new
# history, or one whose offset was lost, so that no offset ever names two messages),
# [2] the room's name as JSON, [3] the frame (a serialised envelope, without position),
# [4] the channel header (a JSON object, completed here with ``"h"``, the position),
# [5] the stream's MAXLEN, [6] the stream's ttl in seconds, [7] the position keys' ttl in
# seconds, [8] the age in milliseconds past which entries are trimmed (0: none),
# [9] the origin, [10] the exclude list as JSON.
# The splice is ``history.with_position``'s and the header's is ``codec.positioned_header``'s:
# the same bytes. Returns {epoch, offset}.
HISTORY_PUBLISH_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local offset = redis.call('INCR', KEYS[2])
local pos = epoch .. ':' .. string.format('%d', offset)
local positioned = '{"room":' .. ARGV[2] .. ',"pos":"' .. pos .. '",' .. string.sub(ARGV[3], 2)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
  'offset', string.format('%d', offset), 'frame', positioned,
  'origin', ARGV[9], 'exclude', ARGV[10])
local age = tonumber(ARGV[8])
if age > 0 then
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age
  redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%d', oldest))
end
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[7])
local header = string.sub(ARGV[4], 1, -2) .. ',"h":"' .. pos .. '"}'
redis.call('PUBLISH', KEYS[4], header .. '\\n' .. positioned)
return {epoch, offset}
"""

# The stream's entries after a position, newest first (the caller reverses them and checks
# that they are a run from the position on). KEYS: epoch key, offset key, stream.
# ARGV: [1] the position's epoch, [2] its offset. Empty for another epoch or nothing newer.
HISTORY_SINCE_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {} end
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local wanted = last - tonumber(ARGV[2])
if wanted <= 0 then return {} end
return redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', wanted)
"""

# A history room's position now (where a member joining now recovers from), creating the
# room's epoch if it has none, so that the position given at a join is in the epoch its
# next messages get. KEYS: epoch key, offset key, stream. ARGV: [1] a fresh epoch, [2] the
# position keys' ttl in seconds. Returns {epoch, offset}.
HISTORY_POSITION_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], 0)
end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {redis.call('GET', KEYS[1]), tonumber(redis.call('GET', KEYS[2]))}
"""
