"""A room's home: the one record of who is in a room, and of when a room exists, sans-I/O.

Owns the rooms one owner is the single authority for: their members in join order (each
with what the owner keeps about it), the ``max_members`` check made in the same step as
the change, and the life of a room: created by its first join (or declared static),
destroyed by its last leave unless static, and still existing for its ``ttl`` after
that. The ``socketspec_rooms`` gauge is set where a room is created or destroyed. Both
room stores keep their rooms here: ``MemoryRoomStore`` for the whole process, the
cluster store for the rooms homed on its shard (each member with its shard instance and
identity). Does not own delivery, connections, or anything across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from socketspec import metrics
from socketspec.backends.base import JoinResult
from socketspec.types import ConnectionId, RoomName

T = TypeVar("T")


class RoomHome(Generic[T]):
    """Rooms and their members, each member with a value of type ``T``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # dict as an ordered set: broadcast order is join order.
        self._rooms: dict[RoomName, dict[ConnectionId, T]] = {}
        self._static: set[RoomName] = set()
        self._ttl: dict[RoomName, float] = {}
        self._empty_until: dict[RoomName, float] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def __iter__(self) -> Iterator[RoomName]:
        """The rooms that exist, oldest first."""
        return iter(self._rooms)

    def __contains__(self, room: object) -> bool:
        return room in self._rooms

    def declare(self, room: RoomName, *, static: bool, ttl: float) -> None:
        if static:
            self._static.add(room)
            self._open(room)
        if ttl:
            self._ttl[room] = ttl

    def members(self, room: RoomName) -> dict[ConnectionId, T]:
        """The room's members in join order with their values (empty for no room); a view
        the caller must not change."""
        return self._rooms.get(room) or {}

    def items(self) -> Iterator[tuple[RoomName, dict[ConnectionId, T]]]:
        return iter(self._rooms.items())

    def join(self, room: RoomName, conn_id: ConnectionId, value: T, max_members: int) -> JoinResult:
        """Admit ``conn_id`` unless it is a member already or the room is at ``max_members``
        (0: no limit)."""
        members = self._rooms.get(room)
        if members is not None and conn_id in members:
            return JoinResult.ALREADY_MEMBER
        if max_members and members is not None and len(members) >= max_members:
            return JoinResult.FULL
        self.record(room, conn_id, value)
        return JoinResult.JOINED

    def record(self, room: RoomName, conn_id: ConnectionId, value: T) -> None:
        """A member admitted elsewhere (a rebuilt room): no limit is checked."""
        self._open(room)[conn_id] = value
        self._empty_until.pop(room, None)

    def leave(self, room: RoomName, conn_id: ConnectionId) -> tuple[bool, bool]:
        """Remove ``conn_id`` from ``room``: whether it was a member, and whether the room
        was left empty by this call (then destroyed, unless static)."""
        members = self._rooms.get(room)
        if members is None:
            return False, False
        was_member = conn_id in members
        if was_member:
            del members[conn_id]
        if members:
            return was_member, False
        self._emptied(room)
        return was_member, True

    def leave_where(
        self, gone: Callable[[T], bool]
    ) -> list[tuple[RoomName, list[ConnectionId], bool]]:
        """Remove every member whose value is ``gone``: per room that lost members, the
        members removed and whether the room was left empty."""
        out: list[tuple[RoomName, list[ConnectionId], bool]] = []
        for room in list(self._rooms):
            members = self._rooms[room]
            removed = [conn_id for conn_id, value in members.items() if gone(value)]
            if not removed:
                continue
            for conn_id in removed:
                del members[conn_id]
            if not members:
                self._emptied(room)
            out.append((room, removed, not members))
        return out

    def exists(self, room: RoomName) -> bool:
        """Whether the room has members, is static, or emptied less than its ttl ago."""
        if room in self._rooms:
            return True
        until = self._empty_until.get(room)
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._empty_until[room]
        return False

    def _open(self, room: RoomName) -> dict[ConnectionId, T]:
        members = self._rooms.get(room)
        if members is None:
            members = self._rooms[room] = {}
            metrics.rooms.set(len(self._rooms))
        return members

    def _emptied(self, room: RoomName) -> None:
        if room in self._static:
            return
        del self._rooms[room]
        metrics.rooms.set(len(self._rooms))
        ttl = self._ttl.get(room)
        if ttl:
            self._empty_until[room] = self._clock() + ttl
