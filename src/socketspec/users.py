"""Users as an address: ``socket.users``, every connection of one user id.

Owns the rule that makes a user addressable: every connection whose identity
has a ``user_id`` is, from its connect to its disconnect, the member of one
reserved room, ``__user__:<user_id>`` (``user_room``). That room lives in the
room store like any other, so everything rooms already do across shards and
nodes holds for users without a second index: the room's home shard owns the
user's connections cluster-wide (each shard keeps its own connections of it in
its local index), orders the messages to the user, counts the deliveries, and
with Redis records the node's connections in the room's hash and fans the
messages of other nodes (and of an ``Emitter``) out to this node's shards.

``emit`` is a broadcast to that room; ``connections`` lists its members
(local ``Connection`` objects, proxies for the others). The reserved room is
invisible to the room API: it is not in ``conn.rooms``, its join and leave
run no room hooks, and ``socket.rooms.join`` refuses the prefix. Does not own
authentication (the identity is decided at connect) or delivery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from socketspec import envelope
from socketspec.connection import Connection
from socketspec.types import ConnectionId, EventName, PayloadDict, RoomName

if TYPE_CHECKING:
    from socketspec.rooms import RoomManager

USER_ROOM_PREFIX = "__user__:"


def user_room(user_id: str) -> RoomName:
    """The reserved room holding every connection of ``user_id``."""
    return f"{USER_ROOM_PREFIX}{user_id}"


def is_user_room(room: RoomName) -> bool:
    return room.startswith(USER_ROOM_PREFIX)


class UserManager:
    """``socket.users``: reach every connection of a user id, on every shard and node."""

    def __init__(self, rooms: RoomManager) -> None:
        self._rooms = rooms

    async def emit(
        self,
        user_id: str,
        event: EventName,
        payload: PayloadDict | BaseModel,
        *,
        exclude: frozenset[ConnectionId] = frozenset(),
    ) -> int:
        """Send ``event`` to every connection of ``user_id``; returns how many it went to,
        counted as ``socket.rooms.broadcast`` counts (exact on one node; across nodes this
        node's connections plus one per other node that has some). Encoded once."""
        frame = envelope.encode(event, payload)
        return await self._rooms.store.publish(user_room(user_id), frame, exclude)

    async def connections(self, user_id: str) -> list[Connection]:
        """Every live connection of ``user_id``: this shard's as ``Connection`` objects, the
        others' as proxies whose ``emit`` and ``disconnect`` work across shards and nodes."""
        return await self._rooms.store.members(user_room(user_id))

    async def disconnect(self, user_id: str, reason: str = "server_close") -> int:
        """Close every connection of ``user_id``; returns how many were asked to close."""
        connections = await self.connections(user_id)
        for conn in connections:
            await conn.disconnect(reason)
        return len(connections)

    async def attach(self, conn: Connection) -> None:
        """A connection opened: file it under its user id (a no-op without one)."""
        user_id = conn.identity.user_id
        if user_id is not None:
            await self._rooms.store.join(user_room(str(user_id)), conn.id, 0)

    async def reidentify(self, conn: Connection, previous: str | None) -> None:
        """A refreshed token named another user: file the connection under the new id only."""
        if previous is not None:
            await self._rooms.store.leave(user_room(str(previous)), conn.id)
        await self.attach(conn)
