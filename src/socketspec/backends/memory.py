"""The single-process room store.

Owns room membership when the whole application lives in one process (the
TestClient, a single shard without peers). Joins are atomic because nothing
here awaits between the check and the change. Rooms are created by the first
join and destroyed by the last leave, unless static or within their ttl.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from socketspec import metrics
from socketspec.backends.base import JoinResult, LocalMember, RoomStore
from socketspec.connection import Connection
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

logger = logging.getLogger("socketspec.rooms")
_HOME_BROADCASTS = metrics.broadcasts.labels(path="home")


class MemoryRoomStore(RoomStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._local: dict[ConnectionId, LocalMember] = {}
        # dict as an ordered set: broadcast order is join order.
        self._rooms: dict[RoomName, dict[ConnectionId, None]] = {}
        self._memberships: dict[ConnectionId, set[RoomName]] = {}
        self._static: set[RoomName] = set()
        self._ttl: dict[RoomName, float] = {}
        self._empty_until: dict[RoomName, float] = {}

    def declare_room(self, room: RoomName, *, static: bool, ttl: float) -> None:
        if static:
            self._static.add(room)
            self._rooms.setdefault(room, {})
            metrics.rooms.set(len(self._rooms))
        if ttl:
            self._ttl[room] = ttl

    async def attach(self, member: LocalMember) -> None:
        self._local[member.id] = member
        self._memberships[member.id] = set()

    async def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        self._local.pop(conn_id, None)
        left = self._memberships.pop(conn_id, set())
        ordered = [room for room in self._rooms if room in left]
        for room in ordered:
            self._remove(room, conn_id)
        return ordered

    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        members = self._rooms.get(room)
        if members is not None and conn_id in members:
            return JoinResult.ALREADY_MEMBER
        if max_members and members is not None and len(members) >= max_members:
            return JoinResult.FULL
        if members is None:
            members = self._rooms[room] = {}
            metrics.rooms.set(len(self._rooms))
        members[conn_id] = None
        self._empty_until.pop(room, None)
        self._memberships.setdefault(conn_id, set()).add(room)
        return JoinResult.JOINED

    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        rooms = self._memberships.get(conn_id)
        if rooms is None or room not in rooms:
            return False
        rooms.discard(room)
        self._remove(room, conn_id)
        return True

    def _remove(self, room: RoomName, conn_id: ConnectionId) -> None:
        members = self._rooms.get(room)
        if members is None:
            return
        members.pop(conn_id, None)
        if members or room in self._static:
            return
        del self._rooms[room]
        metrics.rooms.set(len(self._rooms))
        ttl = self._ttl.get(room)
        if ttl:
            self._empty_until[room] = self._clock() + ttl

    async def members(self, room: RoomName) -> list[Connection]:
        if room in self._local:
            return [self._local[room].conn]
        return [self._local[c].conn for c in self._rooms.get(room, ()) if c in self._local]

    async def exists(self, room: RoomName) -> bool:
        if room in self._rooms or room in self._local:
            return True
        until = self._empty_until.get(room)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._empty_until[room]
        return False

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
        for conn_id in tuple(self._rooms.get(room, ())):
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
