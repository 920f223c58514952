"""Room history: the last messages of a room, each at a position, sans-I/O.

Owns what a room with history keeps and how a reconnecting client's gap is
answered: ``Position`` (an offset within an epoch; the epoch changes when the
history's continuity was lost, so offsets never mean two messages), the
position in the envelope (``with_position``: the room and ``"pos"`` spliced in
front of an already-serialised envelope, so a broadcast is still encoded once),
``HistoryPolicy`` (how many messages, how many bytes, for how long), and
``RoomHistory``, one room's bounded ring with ``since`` answering "everything
after this position" or ``Gap``. ``HistoryBook`` holds the rings of one process
(the room's home keeps the one that assigns offsets; every other shard keeps a
copy of what it was sent, from which a new home is rebuilt).

Does not own where a history lives or who may read it (the room stores), nor
Redis (``cluster/redis/``), nor delivery.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

import orjson

from socketspec.types import ConnectionId, RoomName

# An epoch is short (it travels in every positioned envelope) and random enough that two
# histories of one room never share one: 8 base-36 characters.
EPOCH_LENGTH = 8
_EPOCH_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_epoch() -> str:
    raw = int.from_bytes(os.urandom(8), "big")
    chars = []
    for _ in range(EPOCH_LENGTH):
        raw, digit = divmod(raw, 36)
        chars.append(_EPOCH_ALPHABET[digit])
    return "".join(chars)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where a message stands in its room's history: ``offset`` counts from 1 within
    ``epoch``; offset 0 is "before the first message" (a room joined before any was sent)."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """``"epoch:offset"`` as clients send it back; ValueError for anything else."""
        epoch, sep, offset = text.rpartition(":")
        if not sep or not epoch or not offset.isdigit() or len(epoch) > 64:
            raise ValueError(f"not a position: {text!r}")
        return cls(epoch, int(offset))


def with_position(frame: bytes, room_json: bytes, position: Position) -> bytes:
    """``frame`` (a serialised envelope object) with ``"room"`` and ``"pos"`` in front.

    ``room_json`` is the room's name already JSON-encoded (``orjson.dumps(room)``): the
    Redis script splices the same bytes, so both produce identical envelopes.
    """
    return b"".join(
        (
            b'{"room":',
            room_json,
            b',"pos":"',
            str(position).encode("ascii"),
            b'",',
            frame[1:],
        )
    )


def room_json(room: RoomName) -> bytes:
    return orjson.dumps(room)


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much of a room's past is kept: at most ``size`` messages and ``max_bytes`` of
    them, none older than ``ttl`` seconds (0: no age limit). ``size`` 0 means no history."""

    size: int
    ttl: float = 300.0
    max_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.size < 0 or self.ttl < 0 or self.max_bytes <= 0:
            raise ValueError("history size, ttl and max_bytes must be positive (size 0: none)")

    @property
    def enabled(self) -> bool:
        return self.size > 0


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    offset: int
    frame: bytes  # the envelope with its room and position, as delivered
    origin: str  # the broadcast's name ("" for none): a resent copy is recognised
    exclude: tuple[ConnectionId, ...]  # who the broadcast was not for
    at: float  # when it was appended (the clock of the process keeping it)


class Coverage(Enum):
    COVERED = "covered"  # every message after the position is here (maybe none)
    GAP = "gap"  # some messages after it are gone (expired, trimmed, another epoch)


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to ``since``: the messages after a position, or a gap; ``position`` is
    the history's latest (where live traffic continues from)."""

    coverage: Coverage
    position: Position
    entries: tuple[HistoryEntry, ...] = ()

    def frames_for(self, conn_id: ConnectionId) -> list[bytes]:
        return [entry.frame for entry in self.entries if conn_id not in entry.exclude]


class RoomHistory:
    """One room's last messages, oldest first, bounded by the policy.

    The room's home ``append``s (assigning the next offset); a copy elsewhere ``record``s
    entries it was sent (keeping their offsets); a rebuilt home ``merge``s copies.
    """

    def __init__(
        self,
        room: RoomName,
        policy: HistoryPolicy,
        epoch: str | None = None,
        last_offset: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room = room
        self.room_json = room_json(room)
        self.policy = policy
        self.epoch = epoch or new_epoch()
        self.last_offset = last_offset
        self._clock = clock
        self._entries: deque[HistoryEntry] = deque()
        self._origins: dict[str, int] = {}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[HistoryEntry]:
        return iter(self._entries)

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.last_offset)

    def offset_of(self, origin: str) -> int | None:
        """The offset of the kept message named ``origin`` (a broadcast resent after its
        home died is recognised and not appended twice)."""
        return self._origins.get(origin) if origin else None

    def append(
        self, frame: bytes, origin: str = "", exclude: Iterable[ConnectionId] = ()
    ) -> HistoryEntry:
        """At the home: the next offset for ``frame`` (a serialised envelope without
        position); returns the entry whose ``frame`` carries the room and position."""
        offset = self.last_offset + 1
        positioned = with_position(frame, self.room_json, Position(self.epoch, offset))
        entry = HistoryEntry(offset, positioned, origin, tuple(exclude), self._clock())
        self._keep(entry)
        return entry

    def record(self, entry: HistoryEntry) -> bool:
        """A copy: keep an entry the home assigned; False (and nothing kept) when it is not
        the next one after what is kept here, which is fine for a copy (the home has it)."""
        if entry.offset <= self.last_offset:
            return False
        if self._entries and entry.offset != self.last_offset + 1:
            # A hole (this copy missed messages): what is kept is no longer a run, restart it.
            self._entries.clear()
            self._origins.clear()
            self.bytes = 0
        self._keep(entry)
        return True

    def merge(self, epoch: str, entries: Iterable[HistoryEntry], last_offset: int = 0) -> None:
        """A rebuilt home: take a copy's entries (same epoch, or a first copy) so that the
        kept run is the longest contiguous one ending at the highest offset seen.
        ``last_offset`` is the copy's latest offset even when its entries expired: offsets
        up to it are never given again, and a run that does not reach it is not kept (it
        would answer a later position as covered while missing the newest messages)."""
        incoming = sorted(entries, key=lambda e: e.offset)
        newest_there = max(last_offset, incoming[-1].offset if incoming else 0)
        if epoch != self.epoch:
            if newest_there == 0 or newest_there <= self.last_offset:
                return  # the copy knows nothing, or less than is kept here
            self.epoch = epoch
            self._entries.clear()
            self._origins.clear()
            self.bytes = 0
            self.last_offset = 0
        newest = max(self.last_offset, newest_there)
        by_offset = {entry.offset: entry for entry in self._entries}
        for entry in incoming:
            by_offset.setdefault(entry.offset, entry)
        run: list[HistoryEntry] = []
        offset = newest
        while offset in by_offset:
            run.append(by_offset[offset])
            offset -= 1
        run.reverse()
        self._entries.clear()
        self._origins.clear()
        self.bytes = 0
        self.last_offset = run[0].offset - 1 if run else newest
        for entry in run:
            self._keep(entry)

    def since(self, position: Position | None) -> Replay:
        """Everything after ``position`` (None: the client knew no position, a gap unless
        nothing was ever sent)."""
        self.expire()
        latest = self.position
        if position is None:
            if self.last_offset == 0:
                return Replay(Coverage.COVERED, latest)
            return Replay(Coverage.GAP, latest)
        if position.epoch != self.epoch or position.offset > self.last_offset:
            return Replay(Coverage.GAP, latest)
        first = self._entries[0].offset if self._entries else self.last_offset + 1
        if position.offset + 1 < first:
            return Replay(Coverage.GAP, latest)
        skip = position.offset + 1 - first
        entries = tuple(e for i, e in enumerate(self._entries) if i >= skip)
        return Replay(Coverage.COVERED, latest, entries)

    def expire(self) -> int:
        """Drop entries older than the ttl; returns how many went."""
        if not self.policy.ttl:
            return 0
        oldest_kept = self._clock() - self.policy.ttl
        dropped = 0
        while self._entries and self._entries[0].at < oldest_kept:
            self._drop_oldest()
            dropped += 1
        return dropped

    def _keep(self, entry: HistoryEntry) -> None:
        self._entries.append(entry)
        self.last_offset = entry.offset
        self.bytes += len(entry.frame)
        if entry.origin:
            self._origins[entry.origin] = entry.offset
        while len(self._entries) > self.policy.size or (
            self.bytes > self.policy.max_bytes and len(self._entries) > 1
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        gone = self._entries.popleft()
        self.bytes -= len(gone.frame)
        if gone.origin and self._origins.get(gone.origin) == gone.offset:
            del self._origins[gone.origin]


class HistoryBook:
    """The room histories one process keeps, created on first use with the room's policy
    (``policy_for`` answers None for a room without history)."""

    def __init__(
        self,
        policy_for: Callable[[RoomName], HistoryPolicy | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_for = policy_for
        self._clock = clock
        self._rooms: dict[RoomName, RoomHistory] = {}

    def __contains__(self, room: object) -> bool:
        return room in self._rooms

    def __iter__(self) -> Iterator[RoomHistory]:
        return iter(list(self._rooms.values()))

    def get(self, room: RoomName) -> RoomHistory | None:
        return self._rooms.get(room)

    def has_history(self, room: RoomName) -> bool:
        policy = self.policy_for(room)
        return policy is not None and policy.enabled

    def open(self, room: RoomName, epoch: str | None = None) -> RoomHistory | None:
        """The room's history, created (in ``epoch``, or a new one) if the room has a
        policy; None for a room without history."""
        history = self._rooms.get(room)
        if history is not None:
            return history
        policy = self.policy_for(room)
        if policy is None or not policy.enabled:
            return None
        history = self._rooms[room] = RoomHistory(room, policy, epoch, clock=self._clock)
        return history

    def discard(self, room: RoomName) -> None:
        self._rooms.pop(room, None)

    def sweep(self) -> None:
        """Expire every history's old entries. A history left empty keeps its epoch and
        offset (a client that missed nothing still recovers); the store discards a room's
        history when the room itself ends."""
        for history in self._rooms.values():
            history.expire()

    @property
    def totals(self) -> tuple[int, int]:
        """Messages and bytes kept, for the gauges."""
        count = size = 0
        for history in self._rooms.values():
            count += len(history)
            size += history.bytes
        return count, size
