"""The bytes that cross Redis, sans-I/O: messages on its channels and member records.

Owns a message's form (a JSON header, a newline, the frame as raw bytes: a serialised
envelope is never re-encoded) and a room member's record, ``"<node>:<shard>:<info>"``
(the node first, where the Lua scripts read it). Does not own channel names or Redis.
"""

from __future__ import annotations

from typing import Any

import orjson


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


def encode_message(header: dict[str, Any], frame: bytes) -> bytes:
    return orjson.dumps(header) + b"\n" + frame


def decode_message(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    head, sep, frame = data.partition(b"\n")
    if not sep:
        return None
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError:
        return None
    return (header, frame) if isinstance(header, dict) else None
