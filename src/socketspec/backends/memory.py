"""The single-process room store.

Owns room membership when the whole application lives in one process (the
TestClient, a single shard without peers). Joins are atomic because nothing
here awaits between the check and the change. The rooms, their members and
their lives (created by the first join, destroyed by the last leave unless
static, existing for their ttl after) are a ``RoomHome`` (``backends/home.py``),
the same one the cluster store keeps for the rooms homed on a shard; the
connections served here and their rooms are a ``LocalIndex`` (``backends/local.py``),
the same one the cluster store keeps for its shard's connections.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from socketspec import metrics
from socketspec.backends.base import JoinResult, LocalMember, RoomStore
from socketspec.backends.home import RoomHome
from socketspec.backends.local import LocalIndex, deliver
from socketspec.connection import Connection
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

_HOME_BROADCASTS = metrics.broadcasts.labels(path="home")


class MemoryRoomStore(RoomStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._local = LocalIndex()
        self._rooms: RoomHome[None] = RoomHome(clock)

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
            self._rooms.leave(room, conn_id)
        return ordered

    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        result = self._rooms.join(room, conn_id, None, max_members)
        if result is JoinResult.JOINED:
            self._local.join(room, conn_id)
        return result

    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        if not self._local.leave(room, conn_id):
            return False
        self._rooms.leave(room, conn_id)
        return True

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
