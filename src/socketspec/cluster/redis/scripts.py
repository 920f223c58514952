"""The Lua scripts the Redis bridge runs, as text: joins that check ``max_members``
against live nodes only, and member listings that drop the members of dead nodes.

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
JOIN_SCRIPT = (
    LIVE_ENTRIES
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'already' end
local max = tonumber(ARGV[3])
if max > 0 and #live_entries(KEYS[1], ARGV[4]) / 2 >= max then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'joined'
"""
)

# KEYS[1] the room's hash; ARGV[1] the node key prefix.
# Also run by socketspec.Emitter, which lists members from Redis.
MEMBERS_SCRIPT = LIVE_ENTRIES + "return live_entries(KEYS[1], ARGV[1])\n"
