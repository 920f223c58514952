"""The local index: this process's connections and the rooms each of them is in, sans-I/O.

Owns what a room store knows about the connections it serves itself: each attached member
by connection id, the rooms each connection is in (and each room's local members, in join
order, so a room's broadcasts reach them in one order), and delivery to them: one member,
the local members of a room, or every local member (of a namespace), each with exclusions,
and the count of a room's local members. A member that raises while delivering is logged
and skipped, so one dead member never stops the rest of a broadcast. Both room stores keep
their connections here: ``MemoryRoomStore`` for the whole process, the cluster store for
its shard. Does not own who may join (``max_members``, the life of a room: ``RoomHome``),
metrics, or anything across processes.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Iterator, Set

from socketspec.backends.base import LocalMember
from socketspec.connection import Connection
from socketspec.types import ConnectionId, Namespace, RoomName

logger = logging.getLogger("socketspec.rooms")


def deliver(member: LocalMember, frame: bytes) -> bool:
    """Queue ``frame`` for ``member``: False when it is gone or its delivery raised."""
    try:
        return member.deliver(frame)
    except Exception:  # one dead member never stops the rest of a broadcast
        logger.exception("delivery to %s failed", member.id)
        return False


class LocalIndex:
    """The members served here by connection id, and their rooms."""

    def __init__(self) -> None:
        self._members: dict[ConnectionId, LocalMember] = {}
        # dict as an ordered set: a room's local members in join order.
        self._rooms: dict[RoomName, dict[ConnectionId, None]] = {}
        self._memberships: dict[ConnectionId, set[RoomName]] = {}

    def __contains__(self, conn_id: object) -> bool:
        """Whether ``conn_id`` is attached here."""
        return conn_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def get(self, conn_id: ConnectionId) -> LocalMember | None:
        return self._members.get(conn_id)

    def connections(self) -> list[Connection]:
        """Every attached connection, oldest first."""
        return [member.conn for member in self._members.values()]

    def room_connections(self, room: RoomName) -> list[Connection]:
        """The attached connections in ``room``, in join order."""
        members = self._members
        return [members[c].conn for c in self._rooms.get(room, ()) if c in members]

    def rooms(self) -> Iterator[tuple[RoomName, Iterable[ConnectionId]]]:
        """Each room with local members, with those members in join order."""
        return iter(self._rooms.items())

    def has_room(self, room: RoomName) -> bool:
        """Whether any connection here is in ``room``."""
        return room in self._rooms

    def rooms_of(self, conn_id: ConnectionId) -> Set[RoomName]:
        """The rooms ``conn_id`` is in (empty when none); a view not to be changed."""
        return self._memberships.get(conn_id) or frozenset()

    def attach(self, member: LocalMember) -> None:
        self._members[member.id] = member
        self._memberships[member.id] = set()

    def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        """Forget ``conn_id`` and its memberships: the rooms it was in, oldest room first."""
        self._members.pop(conn_id, None)
        rooms = self._memberships.pop(conn_id, None)
        if not rooms:
            return []
        ordered = [room for room in self._rooms if room in rooms]
        for room in ordered:
            self._remove(room, conn_id)
        return ordered

    def join(self, room: RoomName, conn_id: ConnectionId) -> None:
        """Record ``conn_id`` in ``room`` (the store decided it may join)."""
        self._rooms.setdefault(room, {})[conn_id] = None
        self._memberships.setdefault(conn_id, set()).add(room)

    def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        """Remove ``conn_id`` from ``room``: whether it was in it."""
        rooms = self._memberships.get(conn_id)
        if rooms is None or room not in rooms:
            return False
        rooms.discard(room)
        self._remove(room, conn_id)
        return True

    def deliver_room(self, room: RoomName, frame: bytes, exclude: Container[str]) -> int:
        """Deliver to the attached members of ``room`` not in ``exclude``: how many took it."""
        in_room = self._rooms.get(room)
        if not in_room:
            return 0
        members = self._members
        delivered = 0
        # A snapshot of the ids (one tuple per broadcast): a delivery may make a member leave.
        for conn_id in tuple(in_room):
            if conn_id in exclude:
                continue
            member = members.get(conn_id)
            if member is not None and deliver(member, frame):
                delivered += 1
        return delivered

    def deliver_all(
        self, frame: bytes, exclude: Container[str], namespace: Namespace | None = None
    ) -> int:
        """Deliver to every attached member not in ``exclude`` (of ``namespace``, when
        given): how many took it."""
        delivered = 0
        for conn_id, member in tuple(self._members.items()):
            if conn_id in exclude or (namespace is not None and member.conn.namespace != namespace):
                continue
            if deliver(member, frame):
                delivered += 1
        return delivered

    def count(self, room: RoomName, exclude: Container[str]) -> int:
        """The attached members of ``room`` not in ``exclude``."""
        members = self._members
        return sum(1 for c in self._rooms.get(room, ()) if c not in exclude and c in members)

    def _remove(self, room: RoomName, conn_id: ConnectionId) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.pop(conn_id, None)
            if not members:
                del self._rooms[room]
