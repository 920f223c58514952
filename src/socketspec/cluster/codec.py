"""The inter-shard message codec, sans-I/O.

Owns the messages shards exchange (frozen dataclasses) and their wire form:
a 4-byte big-endian length, then a JSON header ``[kind, fields...]`` of known
length, then an optional raw blob (a serialised envelope travels as bytes,
never re-encoded). ``LinkDecoder`` takes bytes in any chunking and returns
whole messages; a frame larger than ``MAX_FRAME`` is a protocol error. Never
touches a socket.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import orjson

MAX_FRAME = 64 * 1024 * 1024
_HEAD = struct.Struct("!II")  # total length after this word, header length


class LinkProtocolError(Exception):
    """The peer sent bytes that are not a valid pipe frame."""


@dataclass(frozen=True, slots=True)
class LinkMessage:
    KIND: ClassVar[str] = ""
    BLOB: ClassVar[str | None] = None  # the field carried as raw bytes, if any


@dataclass(frozen=True, slots=True)
class Hello(LinkMessage):
    KIND = "hello"
    shard: int
    generation: int


@dataclass(frozen=True, slots=True)
class JoinRequest(LinkMessage):
    KIND = "join"
    request: int
    room: str
    conn_id: str
    max_members: int
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply(LinkMessage):
    """The answer to an ask (join, members, exists); ``value`` is JSON."""

    KIND = "reply"
    request: int
    value: Any


@dataclass(frozen=True, slots=True)
class Leave(LinkMessage):
    KIND = "leave"
    room: str
    conn_id: str


@dataclass(frozen=True, slots=True)
class Publish(LinkMessage):
    """To a room's home: order this frame and fan it out."""

    KIND = "publish"
    BLOB = "frame"
    room: str
    exclude: list[str]
    frame: bytes
    request: int = 0  # 0: no answer; otherwise Reply(request, members it was fanned out to)
    # The broadcast's name, "shard.generation.request" of the sender ("" from the home
    # itself): the home's Deliver carries it, so a shard that also gets the sender's own
    # copy (the home died before answering) delivers it once.
    origin: str = ""


@dataclass(frozen=True, slots=True)
class Deliver(LinkMessage):
    """From a room's home (or to every shard for broadcast_all): write to local members."""

    KIND = "deliver"
    BLOB = "frame"
    room: str | None  # None: every local connection (of ``namespace``, when set)
    exclude: list[str]
    namespace: str | None
    frame: bytes
    request: int = 0  # 0: no answer; otherwise Reply(request, deliveries made)
    origin: str = ""  # the Publish's origin: delivered at most once per shard instance
    # A history room's message: its position, assigned by the home (the frame carries it
    # too); every instance keeps a copy from which a new home is rebuilt. 0: no history.
    offset: int = 0
    epoch: str = ""


@dataclass(frozen=True, slots=True)
class EmitTo(LinkMessage):
    KIND = "emit_to"
    BLOB = "frame"
    request: int  # 0: no answer wanted; otherwise answered with Reply(request, delivered)
    conn_id: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class Kick(LinkMessage):
    """To a connection's shard: close it (``Connection.disconnect`` on a remote member)."""

    KIND = "kick"
    conn_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class MembersRequest(LinkMessage):
    KIND = "members"
    request: int
    room: str


@dataclass(frozen=True, slots=True)
class ExistsRequest(LinkMessage):
    KIND = "exists"
    request: int
    room: str


@dataclass(frozen=True, slots=True)
class Rejoin(LinkMessage):
    """To a restarted home: the sender's members of rooms homed there, to rebuild them."""

    KIND = "rejoin"
    members: list[tuple[str, str, dict[str, Any]]]  # (room, conn_id, info)


@dataclass(frozen=True, slots=True)
class HistorySync(LinkMessage):
    """One room's history as the sender keeps it (its copy, or the home's own ring): sent
    to a (re)started instance before the ``Rejoin``, so a new home is rebuilt from the
    copies before it positions anything. ``entries`` are ``[offset, size, origin,
    exclude, age]`` (age in seconds), their frames concatenated in ``frames``."""

    KIND = "history"
    BLOB = "frames"
    room: str
    epoch: str
    last_offset: int
    entries: list[tuple[int, int, str, list[str], float]]
    frames: bytes


@dataclass(frozen=True, slots=True)
class RecoverRequest(LinkMessage):
    """To a history room's home: ``conn_id`` (recovering on the sender) is a member again,
    without a limit check; answered with a ``RecoverReply``. ``since``: ``"epoch:offset"``,
    or None when the client knows no position."""

    KIND = "recover"
    request: int
    room: str
    conn_id: str
    since: str | None
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecoverReply(LinkMessage):
    """The home's answer to a ``RecoverRequest``: ``coverage`` (``history.Coverage``), the
    history's latest position, and the messages the member missed (``offsets`` and
    ``sizes`` of the frames concatenated in ``frames``; none for a gap)."""

    KIND = "recovered"
    BLOB = "frames"
    request: int
    coverage: str
    position: str
    offsets: list[int]
    sizes: list[int]
    frames: bytes


@dataclass(frozen=True, slots=True)
class Resume(LinkMessage):
    """To the shard a connection id names: close the session ``conn_id`` if it is still
    open there and hand over its stored ack replies; answered with ``Reply(request,
    [[ack_id, frame], ...] or None)``."""

    KIND = "resume"
    request: int
    conn_id: str


@dataclass(frozen=True, slots=True)
class Positioned(LinkMessage):
    """From a draining instance to its successor, once it heard the successor's
    ``Handover``: it positions no more history messages, and every one it did was sent
    before this (so the successor's ring has them before it gives the next offsets)."""

    KIND = "positioned"
    shard: int
    generation: int


@dataclass(frozen=True, slots=True)
class Handover(LinkMessage):
    """From a shard's new instance to its draining predecessor, once linked to every peer:
    it is the home of the shard's rooms from now on (a rolling restart)."""

    KIND = "handover"
    shard: int
    generation: int


@dataclass(frozen=True, slots=True)
class Goodbye(LinkMessage):
    """An instance that exits says it first, and the peer answers with its own: after the
    answer nothing more comes on the link, so every message already sent (a broadcast for
    this home to fan out) was read and handled before the link closes."""

    KIND = "goodbye"
    shard: int
    generation: int


@dataclass(frozen=True, slots=True)
class Ready(LinkMessage):
    """From a shard to the supervisor: listening and linked."""

    KIND = "ready"
    shard: int
    pid: int


@dataclass(frozen=True, slots=True)
class Alive(LinkMessage):
    """From a serving shard to the supervisor, from its event loop, every report interval:
    the loop turns. Silence past ``--shard-timeout`` gets the shard replaced."""

    KIND = "alive"
    shard: int


@dataclass(frozen=True, slots=True)
class BootFailed(LinkMessage):
    KIND = "boot_failed"
    shard: int
    reason: str


MESSAGES: dict[str, type[LinkMessage]] = {
    cls.KIND: cls
    for cls in (
        Hello,
        JoinRequest,
        Reply,
        Leave,
        Publish,
        Deliver,
        EmitTo,
        Kick,
        MembersRequest,
        ExistsRequest,
        Rejoin,
        HistorySync,
        RecoverRequest,
        RecoverReply,
        Resume,
        Positioned,
        Handover,
        Goodbye,
        Ready,
        BootFailed,
        Alive,
    )
}
_FIELDS: dict[type[LinkMessage], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in MESSAGES.values()
}


def encode(message: LinkMessage) -> bytes:
    cls = type(message)
    blob_field = cls.BLOB
    values = [cls.KIND]
    blob = b""
    for name in _FIELDS[cls]:
        if name == blob_field:
            blob = getattr(message, name)
        else:
            values.append(getattr(message, name))
    header = orjson.dumps(values)
    return _HEAD.pack(4 + len(header) + len(blob), len(header)) + header + blob


def _build(header: bytes, blob: bytes) -> LinkMessage:
    try:
        values = orjson.loads(header)
        cls = MESSAGES[values[0]]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise LinkProtocolError(f"bad pipe header: {exc}") from exc
    names = _FIELDS[cls]
    args: list[Any] = []
    it = iter(values[1:])
    try:
        for name in names:
            if name == cls.BLOB:
                args.append(blob)
            else:
                args.append(next(it))
    except StopIteration:
        raise LinkProtocolError(f"pipe header for {cls.KIND} lacks fields") from None
    if cls is Rejoin:
        args[0] = [tuple(member) for member in args[0]]
    elif cls is HistorySync:
        try:
            args[3] = [tuple(entry) for entry in args[3]]
            sizes = [entry[1] for entry in args[3]]
        except (TypeError, IndexError) as exc:
            raise LinkProtocolError(f"bad history entries: {exc}") from exc
        _check_sizes(sizes, blob)
    elif cls is RecoverReply:
        if len(args[3]) != len(args[4]):
            raise LinkProtocolError("recovered: as many offsets as frames")
        _check_sizes(args[4], blob)
    return cls(*args)


def _check_sizes(sizes: list[Any], blob: bytes) -> None:
    if not all(isinstance(size, int) and size >= 0 for size in sizes) or sum(sizes) != len(blob):
        raise LinkProtocolError("frame sizes do not match the blob")


def join_frames(frames: list[bytes]) -> tuple[list[int], bytes]:
    """Several frames as one blob: their sizes and their concatenation."""
    return [len(frame) for frame in frames], b"".join(frames)


def split_frames(sizes: list[int], blob: bytes) -> list[bytes]:
    """The frames ``join_frames`` made (the sizes were checked when the message was read)."""
    _check_sizes(sizes, blob)
    out: list[bytes] = []
    start = 0
    for size in sizes:
        out.append(blob[start : start + size])
        start += size
    return out


class LinkDecoder:
    """Bytes in, messages out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[LinkMessage]:
        buffer = self._buffer
        buffer += data
        out: list[LinkMessage] = []
        offset = 0
        size = len(buffer)
        while size - offset >= 4:
            (length,) = struct.unpack_from("!I", buffer, offset)
            if length > MAX_FRAME or length < 4:
                raise LinkProtocolError(f"pipe frame of {length} bytes")
            if size - offset - 4 < length:
                break
            (header_len,) = struct.unpack_from("!I", buffer, offset + 4)
            start = offset + 8
            if header_len > length - 4:
                raise LinkProtocolError("pipe header longer than its frame")
            header = bytes(buffer[start : start + header_len])
            blob = bytes(buffer[start + header_len : offset + 4 + length])
            out.append(_build(header, blob))
            offset += 4 + length
        if offset:
            del buffer[:offset]
        return out
