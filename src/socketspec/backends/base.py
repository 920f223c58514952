"""The room store interface: the one place that knows who is in which room.

Owns the contract between the room API (``socketspec.rooms``) and the
membership's owner. In one process that owner is ``MemoryRoomStore``; in a
cluster it is the room actors spread over the shards, reached through the same
interface. Every method is async because a remote owner answers later; frames
are already-serialised envelopes, so a broadcast is encoded once whatever the
store does with it. Does not own guards, hooks or room configuration.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from enum import Enum
from typing import Protocol

from socketspec.connection import Connection
from socketspec.history import HistoryPolicy, Position, Replay
from socketspec.types import ConnectionId, Namespace, RoomName


class JoinResult(Enum):
    JOINED = "joined"
    ALREADY_MEMBER = "already_member"
    FULL = "full"


# What a recovering connection's shard is handed back from where its session ran before:
# the stored replies to acked messages (ack id, the __ack__ or __error__ frame), oldest
# first, or None when that session is not known there (never seen, expired, or its shard
# died with it).
ParkedAcks = list[tuple[str | int, bytes]] | None
# What the app registers as ``store.on_resume``: close this process's connection ``conn_id``
# if it is still open (its handlers finished first), and hand over its parked ack replies.
ResumeCallback = Callable[[ConnectionId], Awaitable[ParkedAcks]]


class LocalMember(Protocol):
    """A connection served by this process, as the store sees it."""

    @property
    def id(self) -> ConnectionId: ...

    @property
    def conn(self) -> Connection: ...

    def deliver(self, frame: bytes) -> bool:
        """Queue one serialised envelope; False when the connection is gone. Never blocks."""
        ...


class RoomStore(ABC):
    """Membership and delivery. Implementations must keep each room's order of delivery."""

    def new_connection_id(self) -> ConnectionId:
        """An id for a new connection; a distributed store makes ids it can route."""
        return str(uuid.uuid4())

    @abstractmethod
    async def attach(self, member: LocalMember) -> None:
        """A connection opened here; from now on its id is routable."""

    @abstractmethod
    async def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        """A connection closed: remove it from every room; returns the rooms it was in."""

    @abstractmethod
    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        """Add a member atomically, refusing when ``max_members`` (0: no limit) is reached."""

    @abstractmethod
    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        """Remove a member; False when it was not in the room."""

    @abstractmethod
    async def members(self, room: RoomName) -> list[Connection]:
        """The room's members in join order."""

    @abstractmethod
    async def exists(self, room: RoomName) -> bool:
        """Whether the room has members, is static, or is within its ttl after emptying."""

    @abstractmethod
    async def publish(
        self, room: RoomName, frame: bytes, exclude: frozenset[ConnectionId] = frozenset()
    ) -> int:
        """Deliver ``frame`` to every member of ``room`` not in ``exclude``; returns deliveries."""

    async def send_to(self, conn_id: ConnectionId, frame: bytes) -> bool:
        """Deliver ``frame`` to one connection wherever it is; False when it is not live."""
        return await self.publish(conn_id, frame) > 0

    async def disconnect(self, conn_id: ConnectionId, reason: str) -> bool:
        """Close one connection wherever it is; False when it is not known here."""
        for conn in self.local_connections():
            if conn.id == conn_id:
                await conn.disconnect(reason)
                return True
        return False

    @abstractmethod
    async def publish_all(
        self,
        frame: bytes,
        exclude: frozenset[ConnectionId] = frozenset(),
        namespace: Namespace | None = None,
    ) -> int:
        """Deliver ``frame`` to every connection (of ``namespace``, when given)."""

    # -- history and recovery (docs/recovery.md) -------------------------------------------------

    # Set by the app at startup (recovery enabled); a store calls it for a session that ran
    # in this process.
    on_resume: ResumeCallback | None = None

    def use_history(self, policy_for: Callable[[RoomName], HistoryPolicy | None]) -> None:
        """Tell the store which rooms keep history (the app's ``Room(history_size=...)`` and
        its default); called once at startup, before any connection."""
        self._history_policy = policy_for

    def history_policy_for(self, room: RoomName) -> HistoryPolicy | None:
        policy_for = getattr(self, "_history_policy", None)
        return None if policy_for is None else policy_for(room)

    async def join_at(
        self, room: RoomName, conn_id: ConnectionId, max_members: int
    ) -> tuple[JoinResult, Position | None]:
        """``join``, and the room's history position at that instant (None for a room
        without history): a member that receives nothing before it drops recovers from
        there. Decided in the same step as the join at the room's home."""
        return await self.join(room, conn_id, max_members), None

    async def recover(
        self, room: RoomName, conn_id: ConnectionId, since: Position | None
    ) -> Replay | None:
        """A recovering connection (attached here, its outbound held) is a member of
        ``room`` again, without guards or ``max_members``, and has been given, through its
        ``deliver``, every message of the room after ``since`` that it was not excluded
        from, before any later live message: the Replay says which (``COVERED``) or that
        the history no longer reaches back (``GAP``, nothing delivered). None: the room
        has no history (it is rejoined, nothing is replayed)."""
        await self.join(room, conn_id, 0)
        return None

    async def resume(self, conn_id: ConnectionId) -> ParkedAcks:
        """Take over the session ``conn_id`` from wherever it ran: a connection still open
        under that id (the server has not noticed its drop yet) is closed, its handlers
        finished, and its stored ack replies handed here and forgotten there."""
        return None

    @abstractmethod
    def declare_room(self, room: RoomName, *, static: bool, ttl: float) -> None:
        """Configure a named room before use: static rooms always exist; ttl keeps an empty one."""

    @abstractmethod
    def local_connections(self) -> Iterable[Connection]:
        """Connections served by this process."""


# The reference's name for "what ``SocketApp(backend=...)`` accepts besides ``"memory"``".
# Here that interface is ``RoomStore`` (membership and delivery of encoded frames), not the
# reference's key-value methods; docs/compatibility.md says why.
BackendAdapter = RoomStore
