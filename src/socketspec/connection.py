"""The objects a handler sees: ``Connection``, ``Identity`` and ``SessionInfo``.

Owns the public shape of a live connection, as in the SocketSpec reference.
Does not own the connection's lifecycle, its timers or its outbound queue:
those belong to the connection runtime (``socketspec.runtime``), which binds
``emit`` and ``disconnect`` when the connection opens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from socketspec.types import (
    ConnectionId,
    DisconnectCallable,
    EmitCallable,
    EventName,
    Namespace,
    PayloadDict,
    RawSocket,
    RoomName,
)

TOUCH_RESOLUTION = 0.001  # seconds: ``Connection.last_active`` is this precise


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Identity:
    """Who is on the other end, as established by the auth backend at connect time.

    For unauthenticated connections (no ``auth=`` configured) every field is empty.
    """

    user_id: str | None = None
    role: str | None = None
    scopes: list[str] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    raw_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Set by auth backends: a token without ``sub`` or an anonymous API key still authenticates.
    authenticated: bool = False

    @property
    def is_authenticated(self) -> bool:
        return self.authenticated or self.user_id is not None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass
class SessionInfo:
    """Timing of the current session."""

    started_at: datetime
    expires_at: datetime | None = None
    token_expires_at: datetime | None = None


@dataclass
class Connection:
    """A single live WebSocket connection, passed to every event handler.

    ``emit`` and ``disconnect`` are bound when the connection opens; until then
    calling them raises ``RuntimeError``.
    """

    id: ConnectionId
    raw_socket: RawSocket
    identity: Identity
    session: SessionInfo
    connected_at: datetime
    last_active: datetime
    rooms: set[RoomName] = field(default_factory=set)
    metadata: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    namespace: Namespace = "/"
    # True when this connection took over a dropped one's session (its id, rooms and
    # metadata) and every room's history covered what it missed (docs/recovery.md).
    recovered: bool = False
    # The history position of each history room at its join (what the recovery token
    # carries, so that a member that received nothing still recovers).
    positions: dict[RoomName, str] = field(default_factory=dict, repr=False)
    _emit_fn: EmitCallable | None = field(default=None, repr=False, compare=False)
    _disconnect_fn: DisconnectCallable | None = field(default=None, repr=False, compare=False)
    _touched_at: float = field(default=float("-inf"), repr=False, compare=False)
    _stamp: datetime | None = field(default=None, repr=False, compare=False)

    async def emit(self, event: EventName, payload: PayloadDict | BaseModel) -> None:
        """Send ``event`` with ``payload`` (a dict or a pydantic model) to this connection.

        Raises:
            RuntimeError: if the connection has not been bound to a transport yet.
        """
        if self._emit_fn is None:
            raise RuntimeError(
                "Connection.emit is not available until the connection is bound "
                "to a transport (SocketApp.handle_connect)"
            )
        await self._emit_fn(event, payload)

    async def disconnect(self, reason: str = "server_close") -> None:
        """Close this connection (code 1000); ``reason`` reaches the on_disconnect hooks.

        Raises:
            RuntimeError: if the connection has not been bound to a transport yet.
        """
        if self._disconnect_fn is None:
            raise RuntimeError(
                "Connection.disconnect is not available until the connection is bound "
                "to a transport (SocketApp.handle_connect)"
            )
        await self._disconnect_fn(reason)

    def touch(self) -> None:
        """Record inbound activity, to the millisecond: the wall clock is read at most once a
        millisecond per connection (reading it for every message is a measurable share of
        a small message's cost)."""
        now = time.monotonic()
        # (A value set from outside, which is not the one stamped here, is replaced at once.)
        if now - self._touched_at >= TOUCH_RESOLUTION or self.last_active is not self._stamp:
            self._touched_at = now
            self.last_active = self._stamp = utcnow()

    def __hash__(self) -> int:
        return hash(self.id)
