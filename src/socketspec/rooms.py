"""The room API: ``Room`` configuration, guards, and ``socket.rooms``.

Owns the rules around membership: guards matched by pattern (their variables
passed as keyword arguments), private rooms, ``max_members``, static rooms,
the join and leave hooks, and serialising each broadcast once. Does not own
membership itself: that belongs to the room store (``socketspec.backends``),
which a cluster replaces with room actors spread over the shards.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from socketspec import envelope, metrics
from socketspec.backends.base import JoinResult, RoomStore
from socketspec.connection import Connection
from socketspec.errors import (
    ConfigurationError,
    RoomFullError,
    RoomNotFoundError,
    RoomPermissionError,
)
from socketspec.history import HistoryPolicy
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, EventName, Namespace, PayloadDict, RoomName
from socketspec.users import is_user_room

if TYPE_CHECKING:
    from socketspec.hooks import Hooks

logger = logging.getLogger("socketspec.rooms")

Guard = Callable[..., bool | Awaitable[bool]]

_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Room:
    """A room's configuration.

    A name without ``{variables}`` declares a static room, which always exists.
    A name with them (``"chat:{room_id}"``) is a template whose settings apply to
    every room it matches. ``max_members`` 0 means no limit; ``ttl`` keeps an
    emptied room existing for that many seconds; a ``private`` room can only be
    joined through a guard that admits the connection. ``history_size`` above 0 keeps
    the room's last messages (at most that many and ``history_bytes`` of them, none
    older than ``history_ttl`` seconds) so that a reconnecting member recovers what it
    missed (docs/recovery.md); its messages then carry their position.
    """

    name: RoomName
    private: bool = False
    max_members: int = 0
    ttl: float = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    history_size: int = 0
    history_ttl: float = 300.0
    history_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.history_size < 0 or self.history_ttl < 0 or self.history_bytes <= 0:
            raise ConfigurationError(
                f"room {self.name!r}: history_size and history_ttl must not be negative, "
                "history_bytes must be positive"
            )

    @property
    def history(self) -> HistoryPolicy | None:
        if not self.history_size:
            return None
        return HistoryPolicy(self.history_size, self.history_ttl, self.history_bytes)


DEFAULT_ROOM = Room(name="")


class RoomPattern:
    """A room name pattern such as ``admin:{section}``; variables match one or more characters."""

    __slots__ = ("_regex", "pattern", "variables")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        parts: list[str] = []
        self.variables: list[str] = []
        index = 0
        for match in _VARIABLE.finditer(pattern):
            parts.append(re.escape(pattern[index : match.start()]))
            name = match.group(1)
            if name in self.variables:
                raise ConfigurationError(f"room pattern {pattern!r} repeats variable {name!r}")
            self.variables.append(name)
            parts.append(f"(?P<{name}>.+)")
            index = match.end()
        parts.append(re.escape(pattern[index:]))
        self._regex = re.compile("".join(parts), re.DOTALL)

    @property
    def is_template(self) -> bool:
        return bool(self.variables)

    def match(self, room: RoomName) -> dict[str, str] | None:
        found = self._regex.fullmatch(room)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class RegisteredGuard:
    pattern: RoomPattern
    guard: Guard
    wants_room: bool


class RoomManager:
    """``socket.rooms``: join, leave, broadcast and list members."""

    def __init__(self, store: RoomStore, hooks: Hooks) -> None:
        self._store = store
        self._hooks = hooks
        self._guards: list[RegisteredGuard] = []
        self._static: dict[RoomName, Room] = {}
        self._templates: list[tuple[RoomPattern, Room]] = []
        # The history of rooms without their own ``Room`` (``SocketApp(history_size=...)``).
        self.default_history: HistoryPolicy | None = None
        # Called with a connection after each of its joins and leaves (the app sends it a
        # fresh recovery token, before the join's own ack).
        self.on_membership_change: Callable[[Connection], None] | None = None

    @property
    def store(self) -> RoomStore:
        return self._store

    # -- configuration -------------------------------------------------------------------------

    def add_guard(self, pattern: str, guard: Guard) -> None:
        compiled = RoomPattern(pattern)
        params = inspect.signature(guard).parameters
        wants_room = "room" in params and "room" not in compiled.variables
        self._guards.append(RegisteredGuard(compiled, guard, wants_room))

    def add_room(self, room: Room) -> None:
        pattern = RoomPattern(room.name)
        if pattern.is_template:
            self._templates.append((pattern, room))
        else:
            self._static[room.name] = room
            self._store.declare_room(room.name, static=True, ttl=room.ttl)

    def config_for(self, room: RoomName) -> Room:
        static = self._static.get(room)
        if static is not None:
            return static
        for pattern, config in self._templates:
            if pattern.match(room) is not None:
                return config
        return DEFAULT_ROOM

    def history_policy(self, room: RoomName) -> HistoryPolicy | None:
        """The history ``room`` keeps (None: none): its ``Room``'s (templates included), else
        the app-wide default; ``socket.users``' rooms never keep any."""
        if is_user_room(room):
            return None
        config = self.config_for(room)
        if config is DEFAULT_ROOM:
            return self.default_history
        return config.history

    def replace_store(self, store: RoomStore) -> None:
        self._store = store
        for room in self._static.values():
            store.declare_room(room.name, static=True, ttl=room.ttl)

    def include(self, other: RoomManager) -> None:
        self._guards.extend(other._guards)
        for room in other._static.values():
            self.add_room(room)
        self._templates.extend(other._templates)

    # -- membership ----------------------------------------------------------------------------

    async def check_guards(self, conn: Connection, room: RoomName) -> None:
        """Run every guard whose pattern matches ``room``; raises RoomPermissionError."""
        config = self.config_for(room)
        admitted_by_guard = False
        for registered in self._guards:
            variables = registered.pattern.match(room)
            if variables is None:
                continue
            kwargs: dict[str, Any] = dict(variables)
            if registered.wants_room:
                kwargs["room"] = room
            allowed = registered.guard(conn, **kwargs)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                raise RoomPermissionError(
                    f"not allowed to join room {room!r}", details={"room": room}
                )
            admitted_by_guard = True
        if config.private and not admitted_by_guard:
            raise RoomPermissionError(f"room {room!r} is private", details={"room": room})

    async def join(self, conn: Connection, room: RoomName) -> None:
        """Admit ``conn`` to ``room`` after its guards; raises RoomPermissionError/RoomFullError."""
        if room == conn.id or room in conn.rooms:
            return
        if is_user_room(room):
            raise RoomPermissionError(
                f"room {room!r} is reserved for socket.users", details={"room": room}
            )
        await self.check_guards(conn, room)
        config = self.config_for(room)
        result, position = await self._store.join_at(room, conn.id, config.max_members)
        if result is JoinResult.FULL:
            raise RoomFullError(
                f"room {room!r} is full",
                details={"room": room, "max_members": config.max_members},
            )
        if config.ttl and room not in self._static:
            self._store.declare_room(room, static=False, ttl=config.ttl)
        conn.rooms.add(room)
        if position is not None:
            conn.positions[room] = str(position)
        TALLY.add(metrics.room_joins)
        self._membership_changed(conn)
        await self._hooks.run("on_room_join", conn, room)

    async def leave(self, conn: Connection, room: RoomName) -> None:
        if room not in conn.rooms:
            return
        conn.rooms.discard(room)
        conn.positions.pop(room, None)
        await self._store.leave(room, conn.id)
        TALLY.add(metrics.room_leaves)
        self._membership_changed(conn)
        await self._hooks.run("on_room_leave", conn, room)

    def _membership_changed(self, conn: Connection) -> None:
        notify = self.on_membership_change
        if notify is not None:
            notify(conn)

    async def leave_all(self, conn: Connection) -> None:
        """A connection is going away: drop it everywhere and run the leave hooks per room."""
        rooms = await self._store.detach(conn.id)
        for room in rooms:
            if is_user_room(room):
                continue  # socket.users' own room: no room hooks, no room metrics
            conn.rooms.discard(room)
            TALLY.add(metrics.room_leaves)
            await self._hooks.run("on_room_leave", conn, room)
        conn.rooms.clear()

    async def members(self, room: RoomName) -> list[Connection]:
        return await self._store.members(room)

    async def exists(self, room: RoomName) -> bool:
        return await self._store.exists(room)

    # -- delivery ------------------------------------------------------------------------------

    async def broadcast(
        self,
        room: RoomName,
        event: EventName,
        payload: PayloadDict | BaseModel,
        *,
        exclude: Iterable[ConnectionId | Connection] | None = None,
        strict: bool = False,
    ) -> int:
        """Send ``event`` to every member of ``room``; returns the number of members it was
        fanned out to (the excluded ones not counted).

        In one process that is exact; on one node of several shards it is exact too, counted
        by the room's home shard (a sender on another shard waits for it); across nodes
        (Redis) it is a lower bound: this node's members plus one per other node that
        received it (docs/cluster.md, "What broadcast returns").

        The envelope is serialised once, whatever the number of members. With
        ``strict=True`` a room that does not exist raises ``RoomNotFoundError``
        (the client sees ``ROOM_NOT_FOUND``); otherwise it is a no-op.
        """
        if strict and not await self._store.exists(room):
            raise RoomNotFoundError(f"room {room!r} does not exist", details={"room": room})
        frame = envelope.encode(event, payload)
        return await self._store.publish(room, frame, _ids(exclude))

    async def broadcast_all(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel,
        *,
        namespace: Namespace | None = None,
    ) -> int:
        """Send ``event`` to every connection (of ``namespace`` when given); returns how many
        it went to, cluster-wide on one node (across nodes, this node's only: a lower bound)."""
        return await self._store.publish_all(envelope.encode(event, payload), namespace=namespace)

    async def broadcast_except(
        self,
        exclude: ConnectionId | Connection | Iterable[ConnectionId | Connection],
        event: EventName,
        payload: PayloadDict | BaseModel,
    ) -> int:
        """Send ``event`` to every connection except ``exclude`` (one or several); returns how
        many it went to, as ``broadcast_all`` counts."""
        if isinstance(exclude, str | Connection):
            exclude = [exclude]
        return await self._store.publish_all(envelope.encode(event, payload), _ids(exclude))

    async def emit_to(
        self, conn_id: ConnectionId, event: EventName, payload: PayloadDict | BaseModel
    ) -> bool:
        """Send ``event`` to one connection by id, on any shard; False when it is not live."""
        return await self._store.send_to(conn_id, envelope.encode(event, payload))


def _ids(items: Iterable[ConnectionId | Connection] | None) -> frozenset[ConnectionId]:
    if not items:
        return frozenset()
    return frozenset(item.id if isinstance(item, Connection) else item for item in items)
