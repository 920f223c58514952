"""``TestClient``: the whole application in-process, no sockets.

Owns an in-memory transport and a client-side view of a connection that
drives the application through the same ``ConnectionHandle`` the WebSocket
server keeps (``SocketApp.accept``; messages offered through it wait for a
handler slot as the server's do), so tests exercise origins, auth, the
pipeline, handler slots, rooms, sessions and hooks exactly as a real
connection does. Like a browser client library, it answers heartbeat
pings by itself unless ``auto_pong=False``, and it keeps the latest recovery
token and each history room's latest position to itself (``__recovery__``
never reaches ``receive()``): ``conn.drop()`` cuts the connection without a
closing handshake (``notify_server=False`` leaves the server believing it is
open) and ``await conn.reconnect()`` recovers the session the way a real
client does.

Both forms of the reference work::

    async with TestClient(app).connect() as conn: ...

    async with TestClient(app) as client:
        conn = await client.connect()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from pydantic import BaseModel

from socketspec.app import SocketApp
from socketspec.connection import Connection, Identity
from socketspec.envelope import encode
from socketspec.errors import (
    CloseCode,
    ConnectionClosedError,
    ConnectRejected,
    ErrorReply,
    SystemEvent,
)
from socketspec.handle import ConnectionHandle
from socketspec.receiving import SILENT_EVENTS, Inbox, Receiver
from socketspec.types import AckId, EventName, Namespace, PayloadDict, RoomName

DEFAULT_ORIGIN = "http://testserver"
DEFAULT_MAX_OUTBOUND = 1 << 20


# What the automatic heartbeat answer sends, byte for byte what a client sends.
PONG_FRAME = orjson.dumps({"event": SystemEvent.PONG})

# Kept importable from here: what the TestClient raises.

__all__ = [
    "ConnectRejected",
    "ConnectionClosedError",
    "ErrorReply",
    "MemoryTransport",
    "TestClient",
    "TestConnection",
]


@dataclass
class RecoveryState:
    """What a client keeps to recover its session: the latest token the server gave, the
    latest position of each history room it received from, and how the last connect went."""

    token: str | None = None
    positions: dict[RoomName, str] = field(default_factory=dict)
    recovered: bool = False
    missed: dict[RoomName, str | None] = field(default_factory=dict)

    def seen(self, message: PayloadDict) -> None:
        """Keep what ``message`` says about recovery (every message passes here)."""
        room, pos = message.get("room"), message.get("pos")
        if isinstance(room, str) and isinstance(pos, str):
            self.positions[room] = pos
        event = message.get("event")
        payload = message.get("payload")
        if not isinstance(payload, dict):
            return
        if event == SystemEvent.RECOVERY:
            self.token = payload.get("token")
        elif event == SystemEvent.CONNECT:
            self.recovered = bool(payload.get("recovered"))
            self.missed = dict(payload.get("missed") or {})
            self._token_from(payload)
        elif event == SystemEvent.SERVER_SHUTDOWN:
            self._token_from(payload)

    def _token_from(self, payload: PayloadDict) -> None:
        recovery = payload.get("recovery")
        if isinstance(recovery, dict) and "token" in recovery:
            self.token = recovery["token"]


class MemoryTransport:
    """The server side of an in-memory connection: decoded messages go to an ``Inbox``."""

    def __init__(
        self, max_outbound: int = DEFAULT_MAX_OUTBOUND, recovery: RecoveryState | None = None
    ) -> None:
        self.inbox = Inbox()
        self.frames_out = 0
        self.closed = asyncio.Event()
        self.max_outbound = max_outbound
        self.on_ping: Callable[[], None] | None = None
        self.on_overflow: Callable[[], None] | None = None
        self.recovery = recovery if recovery is not None else RecoveryState()
        # The client is gone without a closing handshake: what is written goes nowhere.
        self.dropped = False
        self._writable: asyncio.Future[None] | None = None
        self.inbox.on_take = self._wake_writer

    def outbound_backlog(self) -> int:
        """Bytes the client has not read yet (what ``max_outbound`` bounds)."""
        return self.inbox.unread_bytes

    async def wait_writable(self) -> None:
        """Until the client reads a message (or the connection is gone)."""
        if self.closed.is_set() or self.dropped:
            return
        waiter = self._writable
        if waiter is None or waiter.done():
            waiter = self._writable = asyncio.get_running_loop().create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def drop(self) -> None:
        """The network is gone: nothing more arrives, the inbox ends without a close code."""
        self.dropped = True
        self.inbox.close(None, "dropped")
        self._wake_writer()

    @property
    def close_code(self) -> int | None:
        return self.inbox.close_code

    @property
    def close_reason(self) -> str:
        return self.inbox.close_reason

    def write(self, data: bytes) -> None:
        if self.closed.is_set() or self.dropped:
            return
        if self.inbox.unread_bytes + len(data) > self.max_outbound:
            # The same policy as the server: a client that stops reading is closed (4008),
            # instead of letting its backlog grow without bound.
            if self.on_overflow is not None:
                self.on_overflow()
            return
        message = orjson.loads(data)
        self.frames_out += 1
        self.recovery.seen(message)
        if message.get("event") in SILENT_EVENTS:
            return
        self.inbox.put(message, len(data))
        if message.get("event") == SystemEvent.PING and self.on_ping is not None:
            self.on_ping()

    async def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.inbox.close(code, reason)
            self.closed.set()
            self._wake_writer()

    def flush_if_quiet(self) -> None:
        """Nothing to flush: every message reaches the inbox as it is written."""


class TestConnection(Receiver):
    """The client end of one in-memory connection."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: SocketApp,
        handle: ConnectionHandle,
        transport: MemoryTransport,
        auto_pong: bool,
        reconnect: Callable[[RecoveryState], Coroutine[Any, Any, TestConnection]] | None = None,
    ) -> None:
        self._app = app
        self._reconnect = reconnect
        # The same handle the shard's protocol and the ASGI adapter drive: messages are
        # offered through it and wait for a handler slot as theirs do.
        self._handle = handle
        self._conn = handle.conn
        self._transport = transport
        self.inbox = transport.inbox
        self._tasks: set[asyncio.Task[None]] = set()
        transport.on_overflow = lambda: self._spawn(
            handle.close(CloseCode.SLOW_CONSUMER, "slow_consumer")
        )
        if auto_pong:
            transport.on_ping = lambda: self._spawn(handle.send(PONG_FRAME))

    # -- what the test can look at -------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The server-side ``Connection`` object."""
        return self._conn

    @property
    def id(self) -> str:
        return self._conn.id

    @property
    def identity(self) -> Identity:
        return self._conn.identity

    @property
    def closed(self) -> bool:
        return self._transport.closed.is_set()

    @property
    def close_code(self) -> int | None:
        return self._transport.close_code

    @property
    def close_reason(self) -> str:
        return self._transport.close_reason

    @property
    def recovered(self) -> bool:
        """This connection recovered a dropped one's session, every room covered."""
        return self._transport.recovery.recovered

    @property
    def missed(self) -> dict[RoomName, str | None]:
        """The rooms whose history did not cover the gap (with the position given)."""
        return self._transport.recovery.missed

    @property
    def recovery_token(self) -> str | None:
        """The latest recovery token the server gave this client."""
        return self._transport.recovery.token

    @property
    def positions(self) -> dict[RoomName, str]:
        """The latest position received of each history room."""
        return self._transport.recovery.positions

    # -- sending -------------------------------------------------------------------------------

    async def emit(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        ack: AckId | None = None,
    ) -> None:
        """Send ``event`` as the client would; returns once the server admitted it."""
        await self.send_raw(encode(event, {} if payload is None else payload, ack))

    send = emit  # the reference's older name

    async def send_raw(self, raw: str | bytes) -> None:
        """Send raw message text (for malformed-input tests)."""
        await self._handle.send(raw)

    def pending(self) -> list[PayloadDict]:
        """Messages received and not yet consumed, without waiting."""
        return self.inbox.pending()

    # -- rooms and lifecycle -------------------------------------------------------------------

    async def join_room(self, room: RoomName) -> None:
        """Join ``room`` through the room API (its guards run)."""
        await self._app.rooms.join(self._conn, room)

    async def leave_room(self, room: RoomName) -> None:
        await self._app.rooms.leave(self._conn, room)

    async def wait_idle(self) -> None:
        """Wait until every handler started by this connection's messages has finished."""
        await self._handle.wait_idle()

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close from the client side."""
        for task in list(self._tasks):
            task.cancel()
        if not self.closed:
            await self._transport.close(code, "client_close")
        await self._handle.disconnect("client_close")

    disconnect = close

    async def drop(self, *, notify_server: bool = True) -> None:
        """The network drops: no closing handshake, nothing more is received. With
        ``notify_server=False`` the server is not told (a half-open connection: it
        believes the client is there until its heartbeat says otherwise)."""
        for task in list(self._tasks):
            task.cancel()
        self._transport.drop()
        if notify_server:
            await self._handle.disconnect("connection_lost")

    async def reconnect(self) -> TestConnection:
        """Connect again with this client's latest recovery token and positions (a still
        open connection is dropped first, the server not told); the new connection's
        ``recovered`` and ``missed`` say how it went."""
        if self._reconnect is None:
            raise RuntimeError("this connection cannot reconnect")
        if not self._transport.dropped and not self.closed:
            await self.drop(notify_server=False)
        return await self._reconnect(self._transport.recovery)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> TestConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class _PendingConnection:
    """What ``TestClient.connect()`` returns: await it, or use it as ``async with``."""

    def __init__(self, client: TestClient, kwargs: dict[str, Any]) -> None:
        self._client = client
        self._kwargs = kwargs
        self._conn: TestConnection | None = None

    def __await__(self) -> Generator[Any, None, TestConnection]:
        return self._client._open(**self._kwargs).__await__()

    async def __aenter__(self) -> TestConnection:
        self._conn = await self._client._open(**self._kwargs)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            await self._conn.close()


class TestClient:
    """Connect in-process clients to ``app``.

    ``auth_token`` is passed the way a browser passes it, as ``?token=``.
    ``origin`` is sent as the Origin header (None sends none). A refused connect
    raises ``ConnectRejected`` (a ``RuntimeError``, as in the reference) whose
    ``code`` is the close code, ``reason`` says why and ``error`` is the
    ``__error__`` payload sent before the close (for an authentication failure).
    """

    __test__ = False

    def __init__(
        self,
        app: SocketApp,
        *,
        auth_token: str | None = None,
        origin: str | None = DEFAULT_ORIGIN,
        auto_pong: bool = True,
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
    ) -> None:
        self.app = app
        self.auth_token = auth_token
        self.origin = origin
        self.auto_pong = auto_pong
        self.max_outbound = max_outbound
        self._open_conns: list[TestConnection] = []

    def connect(
        self,
        *,
        query_params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        namespace: Namespace | None = None,
        auth_token: str | None = None,
    ) -> _PendingConnection:
        return _PendingConnection(
            self,
            {
                "query_params": query_params,
                "headers": headers,
                "namespace": namespace,
                "auth_token": auth_token,
            },
        )

    async def _open(
        self,
        *,
        query_params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        namespace: Namespace | None,
        auth_token: str | None,
        recovery: RecoveryState | None = None,
    ) -> TestConnection:
        params = dict(query_params or {})
        if recovery is not None and recovery.token is not None:
            params["recover"] = recovery.token
            if recovery.positions:
                params["since"] = orjson.dumps(recovery.positions).decode()
        token = auth_token if auth_token is not None else self.auth_token
        if token is not None:
            params.setdefault("token", token)
        all_headers: dict[str, str] = {}
        if self.origin is not None:
            all_headers["origin"] = self.origin
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        # A reconnecting client keeps its positions; the server gives it a new token.
        kept = RecoveryState(positions=dict(recovery.positions)) if recovery else None
        transport = MemoryTransport(self.max_outbound, kept)
        try:
            handle = await self.app.accept(transport, all_headers, params, namespace=namespace)
        except ConnectRejected as exc:
            # What a client would have read before the close: the AUTH_ERROR envelope.
            refusals = [m for m in transport.inbox.pending() if m.get("event") == SystemEvent.ERROR]
            if refusals:
                exc.error = refusals[0].get("payload") or {}
            raise
        async def reconnect(state: RecoveryState) -> TestConnection:
            return await self._open(
                query_params=query_params,
                headers=headers,
                namespace=namespace,
                auth_token=auth_token,
                recovery=state,
            )

        test_conn = TestConnection(self.app, handle, transport, self.auto_pong, reconnect)
        self._open_conns.append(test_conn)
        return test_conn

    async def __aenter__(self) -> TestClient:
        self.app.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for conn in self._open_conns:
            await conn.close()
        self._open_conns.clear()
