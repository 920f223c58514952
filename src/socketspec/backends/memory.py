"""The single-process room store.

Owns room membership when the whole application lives in one process (the
TestClient, a single shard without peers). Joins are atomic because nothing
here awaits between the check and the change. The rooms, their members and
their lives (created by the first join, destroyed by the last leave unless
static, existing for their ttl after) are a ``RoomHome`` (``backends/home.py``),
the same one the cluster store keeps for the rooms homed on a shard; the
connections served here and their rooms are a ``LocalIndex`` (``backends/local.py``),
the same one the cluster store keeps for its shard's connections. The histories of
the rooms that keep one are a ``HistoryBook`` (``history.py``): a broadcast to such a
room is appended (it gets its position) and the positioned envelope delivered; a
recovering member is replayed from it. A room's history outlives the room by its ttl
(its members may all be reconnecting) and is then discarded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from socketspec import metrics
from socketspec.backends.base import JoinResult, LocalMember, ParkedAcks, RoomStore
from socketspec.backends.home import RoomHome
from socketspec.backends.local import LocalIndex, deliver
from socketspec.connection import Connection
from socketspec.history import Coverage, HistoryBook, Position, Replay
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

_HOME_BROADCASTS = metrics.broadcasts.labels(path="home")
# How long an ended room's history is kept when its policy has no age limit.
ENDED_HISTORY_KEEP = 300.0


class MemoryRoomStore(RoomStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._local = LocalIndex()
        self._rooms: RoomHome[None] = RoomHome(clock)
        self._history = HistoryBook(self.history_policy_for, clock)
        # Rooms that ended while keeping a history: when that history is discarded, oldest
        # first (a room that comes back before then keeps its history, epoch and offsets).
        self._ended: dict[RoomName, float] = {}

    @property
    def history(self) -> HistoryBook:
        return self._history

    def declare_room(self, room: RoomName, *, static: bool, ttl: float) -> None:
        self._rooms.declare(room, static=static, ttl=ttl)

    async def attach(self, member: LocalMember) -> None:
        self._local.attach(member)

    async def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        # In the rooms' order here, where a static room keeps the place it was declared at.
        left = self._local.rooms_of(conn_id)
        ordered = [room for room in self._rooms if room in left]
        self._local.detach(conn_id)
        for room in ordered:
            self._left(room, conn_id)
        return ordered

    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        result = self._rooms.join(room, conn_id, None, max_members)
        if result is JoinResult.JOINED:
            self._local.join(room, conn_id)
            self._ended.pop(room, None)
        return result

    async def join_at(
        self, room: RoomName, conn_id: ConnectionId, max_members: int
    ) -> tuple[JoinResult, Position | None]:
        result = await self.join(room, conn_id, max_members)
        history = self._history.open(room) if result is not JoinResult.FULL else None
        return result, None if history is None else history.position

    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        if not self._local.leave(room, conn_id):
            return False
        self._left(room, conn_id)
        return True

    def _left(self, room: RoomName, conn_id: ConnectionId) -> None:
        _, emptied = self._rooms.leave(room, conn_id)
        if emptied and not self._rooms.exists(room):
            history = self._history.get(room)
            if history is not None:
                keep = history.policy.ttl or ENDED_HISTORY_KEEP
                self._ended.pop(room, None)
                self._ended[room] = self._clock() + keep

    def _sweep_ended(self) -> None:
        """Discard the histories of rooms that ended longer ago than their ttl."""
        ended = self._ended
        now = self._clock()
        while ended:
            room, until = next(iter(ended.items()))
            if until > now:
                return
            del ended[room]
            if not self._rooms.exists(room):
                self._history.discard(room)

    async def recover(
        self, room: RoomName, conn_id: ConnectionId, since: Position | None
    ) -> Replay | None:
        self._sweep_ended()
        history = self._history.open(room)
        replay = None if history is None else history.since(since)
        member = self._local.get(conn_id)
        if replay is not None and replay.coverage is Coverage.COVERED and member is not None:
            for frame in replay.frames_for(conn_id):
                deliver(member, frame)
        self._rooms.record(room, conn_id, None)
        self._local.join(room, conn_id)
        self._ended.pop(room, None)
        return replay

    async def resume(self, conn_id: ConnectionId) -> ParkedAcks:
        on_resume = self.on_resume
        return None if on_resume is None else await on_resume(conn_id)

    async def members(self, room: RoomName) -> list[Connection]:
        own = self._local.get(room)
        if own is not None:
            return [own.conn]
        return self._local.room_connections(room)

    async def exists(self, room: RoomName) -> bool:
        return room in self._local or self._rooms.exists(room)

    async def publish(
        self, room: RoomName, frame: bytes, exclude: frozenset[ConnectionId] = frozenset()
    ) -> int:
        own = self._local.get(room)
        if own is not None:  # every connection is the sole member of the room named by its id
            return int(room not in exclude and deliver(own, frame))
        if self._ended:
            self._sweep_ended()
        # A room that never existed gets no history (a broadcast to any name must not grow
        # the book); one that ended keeps its own until it is discarded.
        history = self._history.get(room)
        if history is None and room in self._rooms:
            history = self._history.open(room)
        if history is not None:
            frame = history.append(frame, exclude=exclude).frame
        delivered = self._local.deliver_room(room, frame, exclude)
        TALLY.add(_HOME_BROADCASTS)
        TALLY.observe(metrics.broadcast_fanout, delivered)
        return delivered

    async def publish_all(
        self,
        frame: bytes,
        exclude: frozenset[ConnectionId] = frozenset(),
        namespace: Namespace | None = None,
    ) -> int:
        delivered = self._local.deliver_all(frame, exclude, namespace)
        TALLY.observe(metrics.broadcast_fanout, delivered)
        return delivered

    def local_connections(self) -> Iterable[Connection]:
        return self._local.connections()


# The reference's name for the in-memory backend: ``SocketApp(backend=MemoryBackend())`` is
# ``backend="memory"`` spelled as an object.
MemoryBackend = MemoryRoomStore
