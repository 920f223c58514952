"""An asyncio WebSocket client for socketspec servers, over real TCP or TLS.

Owns the client end of the wire protocol (DESIGN section 3) on a real socket:
the HTTP upgrade, frames (through wsproto), the JSON envelopes, the
``__connect__`` greeting, acks, the heartbeat answers (a ``__pong__`` event for
every ``__ping__`` event, a Pong frame for every Ping frame) and the closing
handshake. Its method names and semantics mirror
``socketspec.testing.TestConnection``, so a test written against the
in-process ``TestClient`` reads the same against a running server::

    async with connect("ws://127.0.0.1:8000/ws", token=token) as client:
        reply = await client.call("send_message", {"room": "lobby", "text": "hi"})

    client = await connect("wss://chat.example/ws", origin="https://chat.example")
    ...
    await client.close()

Meant for tests, benchmarks and scripts. What it bounds and what it does not:
a single incoming message larger than ``max_message_size`` closes the
connection with 1009, and an HTTP refusal body is kept up to 64 KiB; but the
messages received and not yet read wait in an unbounded buffer
(plus the messages a filtered ``receive`` skipped), so a caller that never
reads keeps every message in memory.

Does not own reconnection, subprotocols, compression, or anything on the
server side.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as _ssl
from collections.abc import Callable, Coroutine, Generator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from pydantic import BaseModel
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from socketspec.envelope import encode, message_size
from socketspec.errors import (
    CloseCode,
    ConnectionClosedError,
    ErrorReply,
    SocketSpecError,
    SystemEvent,
)
from socketspec.receiving import DEFAULT_RECEIVE_TIMEOUT, Inbox, Receiver
from socketspec.types import AckId, EventName, PayloadDict

__all__ = ["Client", "ConnectRefused", "ConnectionClosed", "ErrorReply", "connect"]
DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# How long close() waits for the server's Close frame and then for the server to end TCP.
CLOSE_TIMEOUT = 3.0
# How much of an HTTP refusal's body is kept for ConnectRefused.body.
MAX_REFUSAL_BODY = 64 * 1024
READ_CHUNK = 64 * 1024
# RFC 6455 7.1.5: the connection ended without a Close frame. Never sent on the wire.
ABNORMAL_CLOSURE = 1006
# Housekeeping a client library handles itself; receive() without an event skips it.
PONG_MESSAGE = orjson.dumps({"event": SystemEvent.PONG}).decode()
# Headers the opening handshake writes itself; passing them would break the negotiation.
_HANDSHAKE_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)


# The connection is closed and no matching message is left (or a send came too late). Its
# ``code`` is the close code of whichever side closed first (the server's when it closed, the
# client's own when it did, 1006 when TCP ended without a Close frame).
ConnectionClosed = ConnectionClosedError


class ConnectRefused(SocketSpecError):
    """The server did not accept the connection.

    Either the HTTP upgrade was refused (``status`` is the HTTP status and ``body`` the
    response text), or the upgrade succeeded and the server closed before its
    ``__connect__`` greeting (``status`` is None, ``close_code``/``close_reason`` say how,
    and ``error`` is the payload of the ``__error__`` it sent first, if any: an
    authentication failure is ``AUTH_ERROR`` then close code 4001).
    """

    def __init__(
        self,
        *,
        status: int | None = None,
        body: str = "",
        close_code: int | None = None,
        close_reason: str = "",
        error: PayloadDict | None = None,
    ) -> None:
        if status is not None:
            message = f"the server refused the WebSocket upgrade with HTTP {status}"
        else:
            message = f"the server closed before __connect__ (code={close_code})"
            if error is not None:
                message += f": {error.get('code')}: {error.get('message')}"
        super().__init__(message)
        self.status = status
        self.body = body
        self.close_code = close_code
        self.close_reason = close_reason
        self.error = error


class Client(Receiver):
    """One open connection to a socketspec server. Made by ``connect()``, not directly."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        auto_pong: bool,
        max_message_size: int,
    ) -> None:
        self.conn_id: str | None = None
        self.greeting: PayloadDict = {}
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._reader = reader
        self._writer = writer
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._auto_pong = auto_pong
        self._max_message_size = max_message_size
        loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = loop.create_future()
        self.inbox = Inbox()
        self._pings: list[tuple[bytes, asyncio.Future[None]]] = []
        # The message being reassembled from partial events, and its size in bytes so far.
        self._parts: list[Any] = []
        self._size = 0
        self._discarding = False  # skipping the rest of a message beyond max_message_size
        self._refused_status: int | None = None
        self._refused_body = bytearray()
        self._stop_reading = False
        self._eof = False
        self._reader_task: asyncio.Task[None] | None = None

    # -- what the caller can look at -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once either side sent a Close frame or the TCP connection ended."""
        return self.inbox.closed

    # -- sending -------------------------------------------------------------------------------

    async def emit(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        ack: AckId | None = None,
    ) -> None:
        """Send ``{"event", "payload"[, "ack"]}`` as one text message."""
        body = encode(event, {} if payload is None else payload, ack)
        await self._send(TextMessage(data=body.decode("utf-8")))

    async def send_raw(self, data: str | bytes) -> None:
        """Send one message verbatim: a str as a text message, bytes as a binary one."""
        if isinstance(data, str):
            await self._send(TextMessage(data=data))
        else:
            await self._send(BytesMessage(data=bytes(data)))

    async def ping(self, data: bytes = b"", *, timeout: float = DEFAULT_RECEIVE_TIMEOUT) -> float:
        """Send a protocol Ping frame and wait for its Pong; returns the round trip in seconds.

        A Pong answers the Ping with the same payload and every Ping sent before it.
        """
        loop = asyncio.get_running_loop()
        data = bytes(data)
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (data, waiter)
        self._pings.append(entry)
        started = loop.time()
        try:
            await self._send(Ping(payload=data))
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise TimeoutError(f"no Pong received within {timeout:g}s") from None
        finally:
            if entry in self._pings:
                self._pings.remove(entry)
        return loop.time() - started

    # -- closing -------------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake: send Close, wait up to ``CLOSE_TIMEOUT`` for the server's Close
        and for the server to end TCP, then close the socket. Idempotent."""
        if self._send_nowait(CloseConnection(code=code, reason=reason)):
            self._set_closed(code, reason)
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._writer.drain()
            except (ConnectionError, TimeoutError):
                pass
        task = self._reader_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._close_socket()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- opening (used by connect) -------------------------------------------------------------

    async def _open(self, request: Request, timeout: float) -> None:
        """Send the upgrade request, then wait for the 101 and the ``__connect__`` greeting."""
        self._write(self._ws.send(request))
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        await self._handshake
        try:
            message = await self.inbox.take(
                lambda m: m.get("event") == SystemEvent.CONNECT, timeout, SystemEvent.CONNECT
            )
        except ConnectionClosed as exc:
            errors = [m for m in self.inbox.pending() if m.get("event") == SystemEvent.ERROR]
            error = (errors[0].get("payload") or {}) if errors else None
            raise ConnectRefused(
                close_code=exc.code, close_reason=exc.reason, error=error
            ) from None
        payload = message.get("payload")
        self.greeting = payload if isinstance(payload, dict) else {}
        conn_id = self.greeting.get("conn_id")
        self.conn_id = None if conn_id is None else str(conn_id)
        # Kept, like TestConnection keeps it: receive("__connect__") still finds the greeting.
        self.inbox.put_first(message)

    def _abort(self) -> None:
        """Drop the connection at once (a failed or cancelled open)."""
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._handshake.done() and not self._handshake.cancelled():
            self._handshake.exception()  # retrieved: no "never retrieved" warning
        else:
            self._handshake.cancel()
        self._eof = True
        self._writer.transport.abort()

    # -- the reader task -----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while not self._stop_reading:
                if self._ws.state is ConnectionState.CLOSED:
                    await self._wait_for_eof()
                    return
                try:
                    data = await self._reader.read(READ_CHUNK)
                except OSError:
                    data = b""
                try:
                    self._ws.receive_data(data or None)
                except RemoteProtocolError as exc:  # raised only by the HTTP upgrade
                    self._handshake_failed(data, str(exc))
                    return
                self._handle_events()
                if not data:
                    return
        finally:
            self._finish()

    async def _wait_for_eof(self) -> None:
        """After the closing handshake the server ends TCP first (RFC 6455 7.1.1); wait a bit."""
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                while await self._reader.read(READ_CHUNK):
                    pass
        except (TimeoutError, OSError):
            pass

    def _handle_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, Message):
                self._on_data(event)
            elif isinstance(event, Ping):
                self._send_nowait(event.response())
            elif isinstance(event, Pong):
                self._on_pong(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self._on_close(event)
            elif isinstance(event, AcceptConnection):
                if not self._handshake.done():
                    self._handshake.set_result(None)
            elif isinstance(event, RejectConnection):
                self._refused_status = event.status_code
                if not event.has_body:
                    self._refused()
            elif isinstance(event, RejectData):
                room = MAX_REFUSAL_BODY - len(self._refused_body)
                if room > 0:
                    self._refused_body += event.data[:room]
                if event.body_finished:
                    self._refused()

    def _on_data(self, event: Message[Any]) -> None:
        if self._discarding:
            self._discarding = not event.message_finished
            return
        self._size += message_size(event.data)
        if self._size > self._max_message_size:
            self._parts.clear()
            self._size = 0
            self._discarding = not event.message_finished
            if self._send_nowait(
                CloseConnection(code=CloseCode.MESSAGE_TOO_BIG, reason="message too big")
            ):
                self._set_closed(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        self._parts.append(event.data)
        if not event.message_finished:
            return
        parts, self._parts, self._size = self._parts, [], 0
        message: PayloadDict
        if isinstance(event, TextMessage):
            message = _decode_text("".join(parts))
        else:
            message = {"event": None, "raw": b"".join(parts)}
        if self._auto_pong and message.get("event") == SystemEvent.PING:
            self._send_nowait(TextMessage(data=PONG_MESSAGE))
        self.inbox.put(message)

    def _on_pong(self, payload: bytes) -> None:
        for index, (data, _) in enumerate(self._pings):
            if data == payload:
                answered, self._pings = self._pings[: index + 1], self._pings[index + 1 :]
                for _, waiter in answered:
                    if not waiter.done():
                        waiter.set_result(None)
                return

    def _on_close(self, event: CloseConnection) -> None:
        self._set_closed(event.code, event.reason or "")
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            self._send_nowait(event.response())
        elif state is ConnectionState.OPEN:
            # wsproto could not parse the server's frames (1002, 1007, ...): say so, and stop
            # reading a stream that can no longer be framed.
            self._send_nowait(event.response())
            self._stop_reading = True

    def _refused(self) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(
                ConnectRefused(
                    status=self._refused_status,
                    body=self._refused_body.decode("utf-8", "replace"),
                )
            )
        self._stop_reading = True

    def _handshake_failed(self, data: bytes, why: str) -> None:
        if self._refused_status is not None:  # a refusal whose body was cut short
            self._refused()
        elif not self._handshake.done():
            code = CloseCode.PROTOCOL_ERROR if data else ABNORMAL_CLOSURE
            self._handshake.set_exception(ConnectionClosed(code, f"opening handshake: {why}"))

    def _set_closed(self, code: int, reason: str) -> None:
        """Record how the connection closed (the first side to close wins) and wake waiters."""
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.inbox.close(self.close_code, self.close_reason)
        pings, self._pings = self._pings, []
        for _, waiter in pings:
            if not waiter.done():
                waiter.set_exception(ConnectionClosed(self.close_code, self.close_reason))

    def _finish(self) -> None:
        self._eof = True
        if not self._handshake.done():
            self._handshake.set_exception(
                ConnectionClosed(ABNORMAL_CLOSURE, "connection closed during the opening handshake")
            )
        self._set_closed(ABNORMAL_CLOSURE, "")
        self._writer.close()

    # -- writing -------------------------------------------------------------------------------

    def _send_nowait(self, event: Event) -> bool:
        """Write ``event`` if the connection's state allows it; returns whether it did."""
        state = self._ws.state
        if isinstance(event, CloseConnection):
            allowed = state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING)
        else:
            allowed = state is ConnectionState.OPEN
        if not allowed or self._eof or self._writer.is_closing():
            return False
        try:
            data = self._ws.send(event)
        except LocalProtocolError:
            return False
        self._write(data)
        return True

    async def _send(self, event: Event) -> None:
        if not self._send_nowait(event):
            raise ConnectionClosed(self.close_code, self.close_reason)
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ConnectionClosed(self.close_code or ABNORMAL_CLOSURE, self.close_reason) from exc

    def _write(self, data: bytes) -> None:
        self._writer.write(data)

    async def _close_socket(self) -> None:
        self._eof = True
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass


def _decode_text(text: str) -> PayloadDict:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"event": None, "raw": text}
    if not isinstance(message, dict):
        return {"event": None, "raw": text}
    return message


class _Target:
    """Where a ws:// or wss:// URL points, and the upgrade request for it."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"expected a ws:// or wss:// URL, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials in the URL are not supported; pass headers= instead")
        self.tls = parts.scheme == "wss"
        self.host = parts.hostname
        default_port = 443 if self.tls else 80
        self.port = parts.port or default_port
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != default_port:
            host_header += f":{self.port}"
        self.host_header = host_header
        query = parts.query
        if token is not None:
            token_query = urlencode({"token": token})
            query = f"{query}&{token_query}" if query else token_query
        self.resource = (parts.path or "/") + (f"?{query}" if query else "")


def _upgrade_headers(
    headers: Mapping[str, str] | None, origin: str | None
) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered in _HANDSHAKE_HEADERS:
            raise ValueError(f"the {name!r} header is written by the opening handshake itself")
        if lowered == "origin" and origin is not None:
            continue  # origin= wins
        out.append((name.encode("ascii"), value.encode("latin-1")))
    if origin is not None:
        out.append((b"Origin", origin.encode("latin-1")))
    return out


async def _open(
    url: str,
    target: _Target,
    *,
    extra_headers: list[tuple[bytes, bytes]],
    ssl_context: _ssl.SSLContext | None,
    auto_pong: bool,
    open_timeout: float,
    max_message_size: int,
) -> Client:
    client: Client | None = None
    try:
        async with asyncio.timeout(open_timeout):
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=ssl_context,
                server_hostname=target.host if ssl_context is not None else None,
            )
            client = Client(reader, writer, auto_pong=auto_pong, max_message_size=max_message_size)
            request = Request(
                host=target.host_header, target=target.resource, extra_headers=extra_headers
            )
            await client._open(request, open_timeout)
    except TimeoutError:
        if client is not None:
            client._abort()
        raise TimeoutError(f"{url} not open within {open_timeout:g}s") from None
    except (ConnectRefused, ConnectionClosed):
        if client is not None:
            await client.close()
        raise
    except BaseException:
        if client is not None:
            client._abort()
        raise
    return client


class _Connecting:
    """What ``connect()`` returns: await it, or use it as ``async with``."""

    def __init__(self, opener: Callable[[], Coroutine[Any, Any, Client]]) -> None:
        self._opener = opener
        self._client: Client | None = None

    def __await__(self) -> Generator[Any, None, Client]:
        return self._opener().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._opener()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def connect(
    url: str,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    origin: str | None = None,
    ssl: _ssl.SSLContext | None = None,
    auto_pong: bool = True,
    open_timeout: float = DEFAULT_OPEN_TIMEOUT,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> _Connecting:
    """Open a connection to ``url`` (``ws://`` or ``wss://``, path and optional query).

    ``await connect(...)`` returns the ``Client`` once the server accepted the upgrade and
    sent ``__connect__``; ``async with connect(...) as client:`` also closes it on exit.
    ``token`` is appended to the query as ``token=``, the way browsers pass it; ``origin``
    is sent as the Origin header (overriding one in ``headers``); ``ssl`` is the context
    for ``wss://`` (the system's default trust when None). ``open_timeout`` bounds the
    whole opening (TCP, TLS, upgrade, greeting).

    Raises ``ConnectRefused`` when the upgrade is refused or the server closes before its
    greeting, ``TimeoutError`` after ``open_timeout``, ``ValueError`` for a bad URL or
    header, and ``OSError`` when the socket cannot be opened.
    """
    target = _Target(url, token)
    if ssl is not None and not target.tls:
        raise ValueError("ssl= was given for a ws:// URL; use wss://")
    ssl_context = None
    if target.tls:
        ssl_context = ssl if ssl is not None else _ssl.create_default_context()
    opener = functools.partial(
        _open,
        url,
        target,
        extra_headers=_upgrade_headers(headers, origin),
        ssl_context=ssl_context,
        auto_pong=auto_pong,
        open_timeout=open_timeout,
        max_message_size=max_message_size,
    )
    return _Connecting(opener)
