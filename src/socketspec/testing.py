"""``TestClient``: the whole application in-process, no sockets.

Owns an in-memory transport and a client-side view of a connection that
drives the application through the same entry points the WebSocket server
uses (``handle_connect``, ``handle_event``, ``handle_disconnect``), so tests
exercise origins, auth, the pipeline, rooms, sessions and hooks exactly as a
real connection does. Like a browser client library, it answers heartbeat
pings by itself unless ``auto_pong=False``.

Both forms of the reference work::

    async with TestClient(app).connect() as conn: ...

    async with TestClient(app) as client:
        conn = await client.connect()
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any

import orjson
from pydantic import BaseModel

from socketspec.app import SocketApp
from socketspec.connection import Connection, Identity
from socketspec.errors import CloseCode, SocketSpecError
from socketspec.types import AckId, EventName, Namespace, PayloadDict, RoomName

DEFAULT_RECEIVE_TIMEOUT = 5.0
DEFAULT_ORIGIN = "http://testserver"
DEFAULT_MAX_OUTBOUND = 1 << 20
# Housekeeping a client library handles itself; receive() without an event skips it.
HOUSEKEEPING_EVENTS = frozenset({"__connect__", "__ping__"})


class ConnectionClosedError(SocketSpecError):
    """The server closed the test connection and no matching message is left."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed by the server (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class ErrorReply(SocketSpecError):
    """``call()`` got an ``__error__`` instead of an ``__ack__``."""

    def __init__(self, payload: PayloadDict) -> None:
        super().__init__(f"{payload.get('code')}: {payload.get('message')}")
        self.payload = payload
        self.code: str | None = payload.get("code")


class MemoryTransport:
    """The server side of an in-memory connection: decoded messages go to a queue."""

    def __init__(self, max_outbound: int = DEFAULT_MAX_OUTBOUND) -> None:
        self.inbox: asyncio.Queue[PayloadDict] = asyncio.Queue()
        self.frames_out = 0
        self.unread_bytes = 0
        self._sizes: deque[int] = deque()
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self.max_outbound = max_outbound
        self.on_ping: Callable[[], None] | None = None
        self.on_overflow: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        self.unread_bytes += len(data)
        if self.unread_bytes > self.max_outbound:
            # The same policy as the server: a client that stops reading is closed (4008),
            # instead of letting its backlog grow without bound.
            if self.on_overflow is not None:
                self.on_overflow()
            return
        message = orjson.loads(data)
        self._sizes.append(len(data))
        self.frames_out += 1
        self.inbox.put_nowait(message)
        if message.get("event") == "__ping__" and self.on_ping is not None:
            self.on_ping()

    def consumed(self, message: PayloadDict) -> PayloadDict:
        """Account for a message taken from ``inbox`` (the queue is FIFO, so are the sizes)."""
        if self._sizes:
            self.unread_bytes -= self._sizes.popleft()
        return message

    async def close(self, code: int, reason: str) -> None:
        if not self.closed.is_set():
            self.close_code = code
            self.close_reason = reason
            self.closed.set()


class TestConnection:
    """The client end of one in-memory connection."""

    __test__ = False  # not a pytest test class

    def __init__(
        self, app: SocketApp, conn: Connection, transport: MemoryTransport, auto_pong: bool
    ) -> None:
        self._app = app
        self._conn = conn
        self._transport = transport
        self._buffer: deque[PayloadDict] = deque()
        self._acks = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        transport.on_overflow = lambda: self._spawn(
            app.close_connection(conn, CloseCode.SLOW_CONSUMER, "slow_consumer")
        )
        if auto_pong:
            transport.on_ping = lambda: self._spawn(app.handle_event(conn, b'{"event":"__pong__"}'))

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

    # -- sending -------------------------------------------------------------------------------

    async def emit(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        ack: AckId | None = None,
    ) -> None:
        """Send ``event`` as the client would; returns once the server admitted it."""
        body: dict[str, Any] = {"event": event, "payload": _plain(payload)}
        if ack is not None:
            body["ack"] = ack
        await self.send_raw(orjson.dumps(body))

    send = emit  # the reference's older name

    async def send_raw(self, raw: str | bytes) -> None:
        """Send raw message text (for malformed-input tests)."""
        await self._app.handle_event(self._conn, raw)

    async def call(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT,
    ) -> Any:
        """Send with an ack and return the ack's payload; raises ``ErrorReply`` on an error."""
        ack = f"t{next(self._acks)}"
        await self.emit(event, payload, ack=ack)
        message = await self._next(
            lambda m: m.get("ack") == ack and m.get("event") in ("__ack__", "__error__"),
            timeout,
            f"the ack of {event!r}",
        )
        if message["event"] == "__error__":
            raise ErrorReply(message["payload"])
        return message.get("payload")

    # -- receiving -----------------------------------------------------------------------------

    async def receive(
        self, event: EventName | None = None, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> Any:
        """With ``event``: the payload of the next message of that event, skipping (and keeping)
        others. Without: the next whole message, housekeeping events (``__connect__``,
        ``__ping__``) skipped. Raises ``TimeoutError`` naming the event."""
        if event is None:
            return await self._next(
                lambda m: m.get("event") not in HOUSEKEEPING_EVENTS, timeout, "any message"
            )
        message = await self._next(lambda m: m.get("event") == event, timeout, repr(event))
        return message.get("payload")

    async def receive_message(
        self, event: EventName, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> PayloadDict:
        """The next whole message (envelope with ``ack``) of ``event``."""
        return await self._next(lambda m: m.get("event") == event, timeout, repr(event))

    async def receive_broadcast(
        self,
        event: EventName,
        room: RoomName | None = None,
        *,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT,
    ) -> Any:
        """A broadcast arrives like any other message; ``room`` documents which one is expected."""
        return await self.receive(event, timeout=timeout)

    async def receive_error(
        self, code: str | None = None, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> PayloadDict:
        """The payload of the next ``__error__`` (of ``code``, when given)."""
        message = await self._next(
            lambda m: (
                m.get("event") == "__error__"
                and (code is None or m.get("payload", {}).get("code") == code)
            ),
            timeout,
            f"__error__ {code or ''}".strip(),
        )
        payload: PayloadDict = message["payload"]
        return payload

    def pending(self) -> list[PayloadDict]:
        """Messages received and not yet consumed (buffer and queue), without waiting."""
        while not self._transport.inbox.empty():
            self._buffer.append(self._transport.consumed(self._transport.inbox.get_nowait()))
        return list(self._buffer)

    async def _next(self, matches: Any, timeout: float, what: str) -> PayloadDict:
        for index, message in enumerate(self._buffer):
            if matches(message):
                del self._buffer[index]
                return message
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inbox = self._transport.inbox
        while True:
            if inbox.empty() and self.closed:
                raise ConnectionClosedError(self.close_code, self.close_reason)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {what} received within {timeout:g}s")
            getter = asyncio.ensure_future(inbox.get())
            closer = asyncio.ensure_future(self._transport.closed.wait())
            try:
                done, _ = await asyncio.wait(
                    {getter, closer}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                closer.cancel()
                if not getter.done():
                    getter.cancel()
            if getter not in done:
                continue
            message = self._transport.consumed(getter.result())
            if matches(message):
                return message
            self._buffer.append(message)

    # -- rooms and lifecycle -------------------------------------------------------------------

    async def join_room(self, room: RoomName) -> None:
        """Join ``room`` through the room API (its guards run)."""
        await self._app.rooms.join(self._conn, room)

    async def leave_room(self, room: RoomName) -> None:
        await self._app.rooms.leave(self._conn, room)

    async def wait_closed(self, timeout: float = DEFAULT_RECEIVE_TIMEOUT) -> int | None:
        """Wait until the server closes the connection; returns the close code."""
        try:
            await asyncio.wait_for(self._transport.closed.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"connection not closed within {timeout:g}s") from None
        return self.close_code

    async def wait_idle(self) -> None:
        """Wait until every handler started by this connection's messages has finished."""
        rt = self._app.runtime(self._conn.id)
        if rt is not None:
            await rt.wait_idle()

    async def close(self, code: int = CloseCode.NORMAL) -> None:
        """Close from the client side."""
        for task in list(self._tasks):
            task.cancel()
        if not self.closed:
            await self._transport.close(code, "client_close")
        await self._app.handle_disconnect(self._conn, "client_close")

    disconnect = close

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
    ``origin`` is sent as the Origin header (None sends none).
    """

    __test__ = False

    def __init__(
        self,
        app: SocketApp,
        *,
        auth_token: str | None = None,
        origin: str | None = DEFAULT_ORIGIN,
        auto_pong: bool = True,
    ) -> None:
        self.app = app
        self.auth_token = auth_token
        self.origin = origin
        self.auto_pong = auto_pong
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
    ) -> TestConnection:
        params = dict(query_params or {})
        token = auth_token if auth_token is not None else self.auth_token
        if token is not None:
            params.setdefault("token", token)
        all_headers: dict[str, str] = {}
        if self.origin is not None:
            all_headers["origin"] = self.origin
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        transport = MemoryTransport()
        conn = await self.app.handle_connect(transport, all_headers, params, namespace=namespace)
        test_conn = TestConnection(self.app, conn, transport, self.auto_pong)
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


def _plain(payload: PayloadDict | BaseModel | None) -> Any:
    if payload is None:
        return {}
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return payload
