"""The single-process room store.

Owns room membership when the whole application lives in one process (the
TestClient, a single shard without peers). Joins are atomic because nothing
here awaits between the check and the change. The rooms, their members and
their lives (created by the first join, destroyed by the last leave unless
static, existing for their ttl after) are a ``RoomHome`` (``backends/home.py``),
the same one the cluster store keeps for the rooms homed on a shard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from socketspec import metrics
from socketspec.backends.base import JoinResult, LocalMember, RoomStore
from socketspec.backends.home import RoomHome
from socketspec.connection import Connection
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

logger = logging.getLogger("socketspec.rooms")
_HOME_BROADCASTS = metrics.broadcasts.labels(path="home")


class MemoryRoomStore(RoomStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._local: dict[ConnectionId, LocalMember] = {}
        self._rooms: RoomHome[None] = RoomHome(clock)
        self._memberships: dict[ConnectionId, set[RoomName]] = {}

    def declare_room(self, room: RoomName, *, static: bool, ttl: float) -> None:
        self._rooms.declare(room, static=static, ttl=ttl)

    async def attach(self, member: LocalMember) -> None:
        self._local[member.id] = member
        self._memberships[member.id] = set()

    async def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        self._local.pop(conn_id, None)
        left = self._memberships.pop(conn_id, set())
        ordered = [room for room in self._rooms if room in left]
        for room in ordered:
            self._rooms.leave(room, conn_id)
        return ordered

    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        result = self._rooms.join(room, conn_id, None, max_members)
        if result is JoinResult.JOINED:
            self._memberships.setdefault(conn_id, set()).add(room)
        return result

    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        rooms = self._memberships.get(conn_id)
        if rooms is None or room not in rooms:
            return False
        rooms.discard(room)
        self._rooms.leave(room, conn_id)
        return True

    async def members(self, room: RoomName) -> list[Connection]:
        if room in self._local:
            return [self._local[room].conn]
        return [self._local[c].conn for c in self._rooms.members(room) if c in self._local]

    async def exists(self, room: RoomName) -> bool:
        return room in self._local or self._rooms.exists(room)

    def _deliver(self, member: LocalMember, frame: bytes) -> bool:
        try:
            return member.deliver(frame)
        except Exception:  # one dead member never stops the rest of a broadcast
            logger.exception("delivery to %s failed during a broadcast", member.id)
            return False

    async def publish(
        self, room: RoomName, frame: bytes, exclude: frozenset[ConnectionId] = frozenset()
    ) -> int:
        own = self._local.get(room)
        if own is not None:  # every connection is the sole member of the room named by its id
            return int(room not in exclude and self._deliver(own, frame))
        delivered = 0
        local = self._local
        for conn_id in tuple(self._rooms.members(room)):
            if conn_id in exclude:
                continue
            member = local.get(conn_id)
            if member is not None and self._deliver(member, frame):
                delivered += 1
        TALLY.add(_HOME_BROADCASTS)
        TALLY.observe(metrics.broadcast_fanout, delivered)
        return delivered

    async def publish_all(
        self,
        frame: bytes,
        exclude: frozenset[ConnectionId] = frozenset(),
        namespace: Namespace | None = None,
    ) -> int:
        delivered = 0
        for conn_id, member in tuple(self._local.items()):
            if conn_id in exclude or (namespace is not None and member.conn.namespace != namespace):
                continue
            if self._deliver(member, frame):
                delivered += 1
        TALLY.observe(metrics.broadcast_fanout, delivered)
        return delivered

    def local_connections(self) -> Iterable[Connection]:
        return [member.conn for member in self._local.values()]


# The reference's name for the in-memory backend: ``SocketApp(backend=MemoryBackend())`` is
# ``backend="memory"`` spelled as an object.
MemoryBackend = MemoryRoomStore
