"""What the room store asks of the link to other nodes, and the bridge of a lone node.

Owns the ``NodeBridge`` protocol (the calls the cluster room store makes on its
link to the other nodes) and ``NullBridge``, the bridge of a node without Redis:
there are no other nodes, so every call is answered as "nothing beyond this node"
(no other node's members, no remote deliveries, joins decided here, no shared
room history: the store positions history rooms' messages itself). The store
always holds a bridge and never asks whether it has one. Does not own Redis: the
Redis bridge (``cluster/redis/bridge.py``, imported only when a Redis URL is given)
is the other implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from socketspec.history import HistoryEntry, HistoryPolicy, Position
from socketspec.types import ConnectionId, Namespace, RoomName

if TYPE_CHECKING:  # the Redis package is imported only when a Redis URL is given
    from socketspec.cluster.redis.codec import RemoteMember


class NodeBridge(Protocol):
    # False for a lone node: the store answers its peers at once instead of after asking
    # the other nodes, and the handover does not wait for Redis to settle.
    spans_nodes: bool

    @property
    def is_up(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def settled(self) -> None: ...

    def join(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        info: dict[str, Any],
        max_members: int,
    ) -> asyncio.Future[Any] | None: ...

    def announce(
        self, room: RoomName, conn_id: ConnectionId, shard: int, info: dict[str, Any]
    ) -> None: ...

    def leave(self, room: RoomName, conn_id: ConnectionId) -> None: ...

    def room_emptied(self, room: RoomName) -> None: ...

    async def members(self, room: RoomName) -> list[RemoteMember] | None: ...

    def publish_room(
        self, room: RoomName, exclude: list[str], frame: bytes, origin: str = ""
    ) -> asyncio.Future[Any] | None: ...

    def publish_all(
        self, exclude: list[str], namespace: Namespace | None, frame: bytes
    ) -> None: ...

    def send_direct(self, node: str, shard: int, conn_id: ConnectionId, frame: bytes) -> bool: ...

    def kick(self, node: str, shard: int, conn_id: ConnectionId, reason: str) -> bool: ...

    def publish_history(
        self,
        room: RoomName,
        room_json: bytes,
        exclude: list[str],
        frame: bytes,
        origin: str,
        policy: HistoryPolicy,
    ) -> asyncio.Future[Position | None] | None:
        """Position a broadcast to a history room and send it to every node, this one
        included (it comes back through ``BridgeHandler.on_room_message`` with its
        position, in the order the other nodes see it). The future gives the position,
        or None when Redis lost the call (it may or may not have been published); None
        at once: no shared history (a lone node, or Redis is down), the store positions
        it itself."""
        ...

    def history_since(
        self, room: RoomName, since: Position, limit: int
    ) -> asyncio.Future[list[HistoryEntry]] | None:
        """The shared history's entries after ``since``, oldest first, at most ``limit``:
        a run starting at ``since.offset + 1`` in ``since.epoch``, or empty when there is
        none (nothing newer, another epoch, or trimmed/expired past it: the caller tells
        these apart with its own history). None: no shared history to ask."""
        ...

    def history_position(
        self, room: RoomName, policy: HistoryPolicy
    ) -> asyncio.Future[Position | None] | None:
        """The shared history's position of ``room`` now (its epoch created if it had
        none): the position a member joining now recovers from. The future gives None when
        Redis did not answer; None at once: no shared history, the home's own position is
        the room's."""
        ...

    def shared_secret(self, candidate: str) -> Awaitable[str]:
        """The recovery secret every node uses: the first ``candidate`` offered, or
        ``candidate`` itself when there are no other nodes to agree with."""
        ...


class NullBridge:
    """A node alone: nothing crosses to other nodes, and this node decides every join."""

    spans_nodes = False

    @property
    def is_up(self) -> bool:
        return True  # nothing to be down: broadcasts are never degraded for want of Redis

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def settled(self) -> None:
        return None

    def join(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        info: dict[str, Any],
        max_members: int,
    ) -> asyncio.Future[Any] | None:
        return None  # decided on this node alone

    def announce(
        self, room: RoomName, conn_id: ConnectionId, shard: int, info: dict[str, Any]
    ) -> None:
        return None

    def leave(self, room: RoomName, conn_id: ConnectionId) -> None:
        return None

    def room_emptied(self, room: RoomName) -> None:
        return None

    async def members(self, room: RoomName) -> list[RemoteMember] | None:
        return None  # the home's own members are the room

    def publish_room(
        self, room: RoomName, exclude: list[str], frame: bytes, origin: str = ""
    ) -> asyncio.Future[Any] | None:
        return None  # no other node to count

    def publish_all(self, exclude: list[str], namespace: Namespace | None, frame: bytes) -> None:
        return None

    def send_direct(self, node: str, shard: int, conn_id: ConnectionId, frame: bytes) -> bool:
        return False  # a connection id naming another node does not exist here

    def kick(self, node: str, shard: int, conn_id: ConnectionId, reason: str) -> bool:
        return False

    def publish_history(
        self,
        room: RoomName,
        room_json: bytes,
        exclude: list[str],
        frame: bytes,
        origin: str,
        policy: HistoryPolicy,
    ) -> asyncio.Future[Position | None] | None:
        return None  # the home's own history positions it

    def history_since(
        self, room: RoomName, since: Position, limit: int
    ) -> asyncio.Future[list[HistoryEntry]] | None:
        return None  # the home's own history is all there is

    def history_position(
        self, room: RoomName, policy: HistoryPolicy
    ) -> asyncio.Future[Position | None] | None:
        return None  # the home's own history is the room's position

    async def shared_secret(self, candidate: str) -> str:
        return candidate  # no other node to agree with
