"""Connection addresses: where in the cluster a connection id says it lives, sans-I/O.

Owns the one definition of a cluster connection id and of a node id's length: a
connection id is a UUID4 whose first byte is its shard and, on a node with Redis,
whose last four bytes are its node (``NODE_ID_LENGTH`` hex characters), so any shard
of any node routes to it without asking; the rest stays random. The same
``NODE_ID_LENGTH`` starts a member's record in Redis, where the Lua scripts read it
(``cluster/redis/scripts.py``). Does not own routing (the cluster room store decides
what to do with an address) nor Redis; imports neither.
"""

from __future__ import annotations

import uuid

NODE_ID_LENGTH = 8  # hex characters: the last four bytes of a connection id


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
