"""The bytes that cross Redis, sans-I/O: messages on its channels, member records, and
the entries of a room's history stream.

Owns a message's form (a JSON header, a newline, the frame as raw bytes: a serialised
envelope is never re-encoded), the room message's header (``room_header``; a history
room's message is flagged by ``"h"``, its position, which the publishing script adds as
``positioned_header`` does), a room member's record, ``"<node>:<shard>:<info>"`` (the
node first, where the Lua scripts read it), and how a history stream read back becomes
``HistoryEntry`` values (``stream_entry``) and the run a recovery may use (``run_after``).
Does not own channel names, key names or Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from socketspec.history import HistoryEntry, HistoryPolicy, Position


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


# -- room messages ---------------------------------------------------------------------------------


def room_header(
    node: str, room: str, exclude: list[str], origin: str, sent_at: float
) -> dict[str, Any]:
    """The header of a broadcast to a room: who sent it (``n``), when (``t``, for the lag
    metric), the room (``r``), who it is not for (``x``) and its name (``o``, when it has
    one)."""
    header: dict[str, Any] = {"k": "room", "n": node, "t": sent_at, "r": room, "x": exclude}
    if origin:
        header["o"] = origin
    return header


def positioned_header(header: bytes, position: Position) -> bytes:
    """A room message's encoded header flagged as a history message: ``"h"``, the
    position, added as its last member. The publishing script builds the same bytes."""
    return header[:-1] + b',"h":"' + str(position).encode("ascii") + b'"}'


def history_position(header: dict[str, Any]) -> Position | None:
    """The position of a history message; None for a plain room message. ValueError for a
    flag that is not a position."""
    flag = header.get("h")
    if flag is None:
        return None
    if not isinstance(flag, str):
        raise ValueError(f"not a position: {flag!r}")
    return Position.parse(flag)


# -- the history stream ----------------------------------------------------------------------------


def stream_entry(
    entry_id: bytes | str,
    fields: dict[bytes, bytes] | Sequence[bytes],
    wall_now: float,
    monotonic_now: float,
) -> HistoryEntry | None:
    """One entry of a room's stream (``XRANGE``/``XREVRANGE``'s id and fields: offset,
    frame, origin, exclude) as a ``HistoryEntry``; None for a malformed one. Its ``at`` is
    on this process's monotonic clock, from the time in the stream id (Redis's clock, in
    ms) and the wall clock now."""
    raw_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    if isinstance(fields, dict):
        named = {_text(key): value for key, value in fields.items()}
    else:
        named = {_text(fields[i]): fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    try:
        millis = int(raw_id.partition("-")[0])
        offset = int(named["offset"])
        frame = bytes(named["frame"])
        origin = _text(named.get("origin", b""))
        exclude = orjson.loads(named.get("exclude", b"[]"))
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        return None
    if offset < 1 or not isinstance(exclude, list):
        return None
    age = max(0.0, wall_now - millis / 1000)
    return HistoryEntry(offset, frame, origin, tuple(str(c) for c in exclude), monotonic_now - age)


def run_after(
    entries: Iterable[HistoryEntry],
    since: Position,
    limit: int,
    policy: HistoryPolicy,
    monotonic_now: float,
) -> list[HistoryEntry]:
    """Of a stream's entries (any order), the run a recovery from ``since`` may use: the
    entries from ``since.offset + 1`` on, contiguous, none older than the policy's ttl,
    the newest ``size`` within its bytes (as the home's own history keeps them; the
    stream's MAXLEN is approximate), at most ``limit``
    of them, oldest first. Empty when that run does not start right after ``since``."""
    kept = sorted(
        (entry for entry in entries if entry.offset > since.offset), key=lambda e: e.offset
    )
    if policy.ttl:
        oldest = monotonic_now - policy.ttl
        kept = [entry for entry in kept if entry.at >= oldest]
    kept = kept[-policy.size :] if policy.size else []
    # The newest entries within the bytes limit (the newest one always), as a ring keeps.
    first, total = len(kept), 0
    while first > 0:
        size = len(kept[first - 1].frame)
        if first < len(kept) and total + size > policy.max_bytes:
            break
        total += size
        first -= 1
    kept = kept[first:]
    if not kept or kept[0].offset != since.offset + 1:
        return []
    run = [kept[0]]
    for entry in kept[1:]:
        if entry.offset != run[-1].offset + 1 or len(run) >= limit:
            break
        run.append(entry)
    return run[: max(0, limit)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
