"""Connection addresses: where in the cluster a connection id says it lives, sans-I/O.

Owns the one definition of a cluster connection id and of a room member's record
in Redis, and the Lua expression the Redis scripts read a member's node with:

- a connection id is a UUID4 whose first byte is its shard and, on a node with
  Redis, whose last four bytes are its node (``NODE_ID_LENGTH`` hex characters),
  so any shard of any node routes to it without asking; the rest stays random;
- a member record is ``"<node>:<shard>:<info JSON>"``: the node first, so the
  scripts take it as the value's first ``NODE_ID_LENGTH`` characters
  (``LUA_MEMBER_NODE``).

Does not own routing (the cluster room store decides what to do with an address)
nor Redis itself (``cluster/redis_bridge.py``); imports neither.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

NODE_ID_LENGTH = 8  # hex characters: the last four bytes of a connection id
# The node of the member record held in the Lua variable ``value``, as the scripts read it.
LUA_MEMBER_NODE = f"string.sub(value, 1, {NODE_ID_LENGTH})"


def new_connection_id(shard: int, node: str = "") -> str:
    """A fresh id naming ``shard`` (and ``node``, "" for a node without Redis)."""
    raw = bytearray(uuid.uuid4().bytes)
    raw[0] = shard
    if node:
        raw[12:16] = bytes.fromhex(node)
    return str(uuid.UUID(bytes=bytes(raw)))


def locate(conn_id: str, *, with_node: bool) -> tuple[str, int] | None:
    """The node and shard ``conn_id`` names; the node is "" unless ``with_node`` (ids made
    without a node carry random bytes there). None for a string that is not such an id."""
    if len(conn_id) != 36 or conn_id[14] != "4" or conn_id[8] != "-":
        return None
    try:
        shard = int(conn_id[:2], 16)
    except ValueError:
        return None
    return (conn_id[-NODE_ID_LENGTH:] if with_node else ""), shard


class RemoteMember:
    """A member of a room as Redis lists it."""

    __slots__ = ("conn_id", "info", "node", "shard")

    def __init__(self, conn_id: str, node: str, shard: int, info: dict[str, Any]) -> None:
        self.conn_id = conn_id
        self.node = node
        self.shard = shard
        self.info = info


def member_value(node: str, shard: int, info: dict[str, Any]) -> bytes:
    return f"{node}:{shard}:".encode() + orjson.dumps(info)


def parse_member(conn_id: bytes | str, value: bytes | str) -> RemoteMember | None:
    """The member a record names; None for a malformed one (skipped, never fatal)."""
    raw = value.encode() if isinstance(value, str) else value
    try:
        node, shard, info = raw.split(b":", 2)
        return RemoteMember(
            conn_id.decode() if isinstance(conn_id, bytes) else conn_id,
            node.decode(),
            int(shard),
            orjson.loads(info),
        )
    except ValueError:
        return None
