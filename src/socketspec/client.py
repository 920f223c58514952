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

With ``reconnect=Reconnect(...)`` it survives its connection: after an
unexpected close it reconnects with exponential backoff and jitter and asks
the server to recover the session (``?recover=<token>&since=<positions>``,
docs/recovery.md): the same ``conn_id`` and rooms, every room message missed
meanwhile, then live traffic. It keeps the latest recovery token (from
``__connect__``, ``__recovery__`` and ``__server_shutdown__``) and the latest
position of each room (from every positioned envelope), resends the ``call()``s
still unanswered with their ack ids (the server answers a resent one from its
stored reply instead of running it again), and holds ``emit()``s made while
reconnecting in a bounded offline queue. It does not drop duplicates by
position: the server sends none, and ``room_counts`` lets a test check that.

Meant for tests, benchmarks and scripts. What it bounds and what it does not:
a single incoming message larger than ``max_message_size`` closes the
connection with 1009, an HTTP refusal body is kept up to 64 KiB, the offline
queue holds at most ``max_offline`` messages (past that ``emit`` raises
``OfflineQueueFull``); but the messages received and not yet read wait in an
unbounded buffer (plus the messages a filtered ``receive`` skipped), so a
caller that never reads keeps every message in memory.

Does not own subprotocols, compression, or anything on the server side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import socket as _socket
import ssl as _ssl
import struct
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from enum import Enum
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
from socketspec.types import AckId, EventName, PayloadDict, RoomName

__all__ = [
    "Client",
    "ClientState",
    "ConnectRefused",
    "ConnectionClosed",
    "ErrorReply",
    "IllegalClientTransition",
    "OfflineQueueFull",
    "Reconnect",
    "backoff_delay",
    "connect",
]
logger = logging.getLogger("socketspec.client")
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


class OfflineQueueFull(SocketSpecError):
    """``emit()`` while reconnecting found the offline queue full (``max_offline``)."""


class IllegalClientTransition(SocketSpecError):
    """A client state change the transition table does not allow (a bug in the client)."""


# What answers a message that carried an ack.
REPLY_EVENTS = frozenset({SystemEvent.ACK, SystemEvent.ERROR})
# Close codes after which reconnecting would only repeat the refusal or the mistake: the
# server closed on purpose (1000: a kick), the client spoke wrongly (1002, 1007, 1009), the
# credentials were refused (4001-4003; a ``token_refresh`` callback may give new ones), or the
# connection was idle (4004). Every other end (1001 shutdown, 1006 a cut, 1011, 1012, 1013,
# 4005 heartbeat, 4008 slow consumer) reconnects.
FINAL_CLOSE_CODES = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 1010, 4004})
CREDENTIAL_CLOSE_CODES = frozenset(
    {CloseCode.AUTH_FAILED, CloseCode.TOKEN_EXPIRED, CloseCode.SESSION_EXPIRED}
)
RECOVERY_ERROR_CODES = frozenset({"RECOVERY_INVALID", "RECOVERY_EXPIRED", "RECOVERY_FOREIGN"})
DEFAULT_MAX_OFFLINE = 1000


@dataclass(frozen=True, slots=True)
class Reconnect:
    """How a client reconnects after an unexpected close.

    The n-th retry (n from 0) waits ``min(maximum, initial * 2**n)`` seconds, of which the
    fraction ``jitter`` is random: the wait is uniform in ``[base * (1 - jitter), base]``
    (``jitter=1.0`` is "full jitter", uniform in ``[0, base]``), so clients cut at once do
    not all come back at once. ``attempts`` bounds the retries of one outage (None: no
    bound); past it the client closes with the last close code.
    """

    initial: float = 0.25
    maximum: float = 10.0
    jitter: float = 0.5
    attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("Reconnect needs 0 <= initial <= maximum")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("Reconnect jitter is a fraction between 0 and 1")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("Reconnect attempts must be at least 1 (None: no limit)")


def backoff_delay(
    policy: Reconnect, retry: int, rand: Callable[[], float] = random.random
) -> float:
    """The wait before retry number ``retry`` (0 for the first) of an outage."""
    base = min(policy.maximum, policy.initial * (2.0 ** min(retry, 62)))
    return base * (1.0 - policy.jitter * rand())


class ClientState(Enum):
    CONNECTING = "connecting"  # the first opening
    OPEN = "open"
    RECONNECTING = "reconnecting"  # the socket ended; retrying (sends wait offline)
    CLOSED = "closed"  # closed by us, by the server for good, or reconnecting gave up


_TRANSITIONS: dict[ClientState, frozenset[ClientState]] = {
    ClientState.CONNECTING: frozenset({ClientState.OPEN, ClientState.CLOSED}),
    ClientState.OPEN: frozenset({ClientState.RECONNECTING, ClientState.CLOSED}),
    ClientState.RECONNECTING: frozenset({ClientState.OPEN, ClientState.CLOSED}),
    ClientState.CLOSED: frozenset(),
}

OnRecover = Callable[["Client", bool, dict[str, str]], Awaitable[None] | None]
TokenRefresh = Callable[[], Awaitable[str | None] | str | None]


class Client(Receiver):
    """One connection to a socketspec server, kept across reconnections when asked to.

    Made by ``connect()``, not directly. Per TCP connection (replaced on a reconnect): the
    reader and writer, the wsproto state, the reader task. Per client: the inbox, the
    recovery token, the room positions and counts, the unanswered calls, the offline queue.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        auto_pong: bool,
        max_message_size: int,
        reconnect: Reconnect | None = None,
        on_recover: OnRecover | None = None,
        max_offline: int = DEFAULT_MAX_OFFLINE,
        opener: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
        | None = None,
        target: _Target | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        token_refresh: TokenRefresh | None = None,
    ) -> None:
        self.conn_id: str | None = None
        self.greeting: PayloadDict = {}
        self.close_code: int | None = None
        self.close_reason: str = ""
        # Recovery: what the last greeting said, and what the client keeps to ask for it.
        self.recovered = False
        self.missed: dict[str, str] = {}
        self.recovery_error: PayloadDict | None = None
        self.recovery_token: str | None = None
        self.positions: dict[RoomName, str] = {}
        self.room_counts: Counter[RoomName] = Counter()
        self.reconnects = 0
        self.resent_calls = 0  # calls written, unanswered when their socket ended, sent again
        self.state = ClientState.CONNECTING
        self._auto_pong = auto_pong
        self._max_message_size = max_message_size
        self._reconnect = reconnect
        self._on_recover = on_recover
        self._max_offline = max_offline
        self._opener = opener
        self._target = target
        self._extra_headers = extra_headers or []
        self._open_timeout = open_timeout
        self._token_refresh = token_refresh
        self.inbox = Inbox()
        self._pings: list[tuple[bytes, asyncio.Future[None]]] = []
        # Acked calls written on the current socket and not answered yet (resent after a
        # reconnect), and what waits for the next socket, in send order.
        self._inflight: dict[AckId, str] = {}
        self._offline: deque[tuple[AckId | None, str]] = deque()
        self._open_event = asyncio.Event()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._drop_pause: float | None = None
        self._attach(reader, writer)

    # -- what the caller can look at -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the client is closed for good (by either side, or reconnecting gave up);
        a connection being reconnected is not closed."""
        return self.inbox.closed

    async def wait_open(self, timeout: float = DEFAULT_RECEIVE_TIMEOUT) -> None:
        """Wait until the client is open (again, after a reconnect); ``ConnectionClosed`` once
        it is closed for good."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.state is not ClientState.OPEN:
            if self.state is ClientState.CLOSED:
                raise ConnectionClosed(self.close_code, self.close_reason)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"not open again within {timeout:g}s")
            opened = asyncio.ensure_future(self._open_event.wait())
            closed = asyncio.ensure_future(self.inbox.wait_closed())
            try:
                await asyncio.wait(
                    {opened, closed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                opened.cancel()
                closed.cancel()

    def _transition(self, to: ClientState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise IllegalClientTransition(f"client cannot go from {self.state.value} to {to.value}")
        self.state = to
        if to is ClientState.OPEN:
            self._open_event.set()
        else:
            self._open_event.clear()

    # -- sending -------------------------------------------------------------------------------

    async def emit(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        ack: AckId | None = None,
    ) -> None:
        """Send ``{"event", "payload"[, "ack"]}`` as one text message (while reconnecting,
        it waits in the offline queue and goes out first thing on the next connection)."""
        body = encode(event, {} if payload is None else payload, ack)
        await self._send_text(body.decode("utf-8"), None)

    async def call(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT,
    ) -> Any:
        """Send with a fresh ack id and return the ``__ack__`` payload; raises ``ErrorReply``
        when an ``__error__`` carrying that ack comes back instead. Not answered when the
        connection drops: resent with the same ack id after the reconnect, within
        ``timeout`` in total."""
        ack = f"{self._ack_prefix}{next(self._acks)}"
        body = encode(event, {} if payload is None else payload, ack).decode("utf-8")
        try:
            await self._send_text(body, ack)
            message = await self.inbox.take(
                lambda m: m.get("ack") == ack and m.get("event") in REPLY_EVENTS,
                timeout,
                f"the ack of {event!r}",
            )
        finally:
            self._forget(ack)
        if message["event"] == SystemEvent.ERROR:
            raise ErrorReply(message.get("payload") or {})
        return message.get("payload")

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

    async def _send_text(self, text: str, ack: AckId | None) -> None:
        """Write one envelope now, or, while reconnecting, queue it for the next socket; an
        acked call is remembered until answered so a reconnect can resend it."""
        if self.state is ClientState.RECONNECTING:
            self._queue_offline(ack, text)
            return
        if ack is not None:
            self._inflight[ack] = text
        if self._send_nowait(TextMessage(data=text)):
            try:
                await self._writer.drain()
            except ConnectionError as exc:
                if not self._may_reconnect():
                    if ack is not None:
                        self._inflight.pop(ack, None)
                    raise ConnectionClosed(
                        self.close_code or ABNORMAL_CLOSURE, self.close_reason
                    ) from exc
                # The socket is ending: a call is resent from _inflight after the reconnect.
            return
        if ack is not None:
            del self._inflight[ack]
        if self._may_reconnect():
            # The socket ended but its reader has not noticed yet: the reconnect sends it.
            self._queue_offline(ack, text)
            return
        raise ConnectionClosed(self.close_code, self.close_reason)

    def _may_reconnect(self) -> bool:
        return self._reconnect is not None and self.state in (
            ClientState.OPEN,
            ClientState.RECONNECTING,
        )

    def _queue_offline(self, ack: AckId | None, text: str) -> None:
        if len(self._offline) >= self._max_offline:
            raise OfflineQueueFull(
                f"{len(self._offline)} messages wait for the reconnection (max_offline)"
            )
        self._offline.append((ack, text))

    def _forget(self, ack: AckId) -> None:
        """A call that got its answer or gave up: never resend it."""
        self._inflight.pop(ack, None)
        if any(queued == ack for queued, _ in self._offline):
            self._offline = deque(item for item in self._offline if item[0] != ack)

    # -- closing -------------------------------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake: send Close, wait up to ``CLOSE_TIMEOUT`` for the server's Close
        and for the server to end TCP, then close the socket. Stops reconnecting. Idempotent."""
        if self.state is not ClientState.CLOSED:
            self._transition(ClientState.CLOSED)
        self._offline.clear()
        reconnecting = self._reconnect_task
        if reconnecting is not None and not reconnecting.done():
            self._set_closed(code, reason)
            reconnecting.cancel()
            await asyncio.gather(reconnecting, return_exceptions=True)
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
        self._set_closed(code, reason)
        await self._close_socket()

    async def drop(self, pause: float = 0.0) -> None:
        """Cut the TCP connection at once, without a Close frame (a reset, as a network that
        went away looks to the server). With ``reconnect``, the client reconnects and
        recovers, the first try after ``pause`` seconds; without, it is closed with 1006."""
        if self.state is not ClientState.OPEN:
            return
        self._drop_pause = pause
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER 0: close() sends a RST, not a FIN.
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()
        # Let the reader task see the end (and start reconnecting) before returning.
        task = self._reader_task
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- opening -------------------------------------------------------------------------------

    def _attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Start over on a new TCP connection: a fresh wsproto state and reading state."""
        self._reader = reader
        self._writer = writer
        self._ws = WSConnection(ConnectionType.CLIENT)
        loop = asyncio.get_running_loop()
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._greeted: asyncio.Future[PayloadDict] = loop.create_future()
        self._early: list[PayloadDict] = []  # messages before this socket's __connect__
        # The message being reassembled from partial events, and its size in bytes so far.
        self._parts: list[Any] = []
        self._size = 0
        self._discarding = False  # skipping the rest of a message beyond max_message_size
        self._refused_status: int | None = None
        self._refused_body = bytearray()
        self._stop_reading = False
        self._eof = False
        self._socket_close: tuple[int, str] | None = None  # this socket's Close, if any
        self._reader_task: asyncio.Task[None] | None = None

    async def _open(self, request: Request, timeout: float) -> None:
        """Send the upgrade request, then wait for the 101 and the ``__connect__`` greeting."""
        self._write(self._ws.send(request))
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        await self._handshake
        greeted = self._greeted
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(greeted)
        except TimeoutError:
            raise TimeoutError(f"no {SystemEvent.CONNECT!r} received within {timeout:g}s") from None
        except ConnectionClosed as exc:
            errors = [m for m in self._early if m.get("event") == SystemEvent.ERROR]
            error = (errors[0].get("payload") or {}) if errors else None
            raise ConnectRefused(
                close_code=exc.code, close_reason=exc.reason, error=error
            ) from None

    def _abort(self) -> None:
        """Drop the connection at once (a failed or cancelled open)."""
        if self._reader_task is not None:
            self._reader_task.cancel()
        for future in (self._handshake, self._greeted):
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
            else:
                future.cancel()
        self._eof = True
        self._writer.transport.abort()

    # -- reconnecting --------------------------------------------------------------------------

    def _reconnect_request(self) -> Request:
        assert self._target is not None
        extra: dict[str, str] = {}
        if self.recovery_token:
            extra["recover"] = self.recovery_token
            if self.positions:
                extra["since"] = orjson.dumps(self.positions).decode()
        return Request(
            host=self._target.host_header,
            target=self._target.resource_with(extra),
            extra_headers=self._extra_headers,
        )

    async def _reconnect_loop(self, first_pause: float | None) -> None:
        policy = self._reconnect
        assert policy is not None and self._opener is not None and self._target is not None
        retry = 0
        last_code, last_reason = self._socket_close or (ABNORMAL_CLOSURE, "")
        delay = first_pause if first_pause is not None else backoff_delay(policy, 0)
        while True:
            await asyncio.sleep(delay)
            retry += 1
            try:
                reader, writer = await asyncio.wait_for(self._opener(), self._open_timeout)
            except (OSError, TimeoutError):
                pass
            else:
                self._attach(reader, writer)
                try:
                    async with asyncio.timeout(self._open_timeout):
                        await self._open(self._reconnect_request(), self._open_timeout)
                except ConnectRefused as exc:
                    await self._close_socket()
                    if exc.close_code is not None:
                        last_code, last_reason = exc.close_code, exc.close_reason
                    if exc.close_code in CREDENTIAL_CLOSE_CODES and not await self._refresh():
                        break
                except (OSError, TimeoutError, ConnectionClosed):
                    self._abort()
                except asyncio.CancelledError:
                    self._abort()  # close() while this attempt was opening
                    raise
                else:
                    await self._reopened()
                    return
            if policy.attempts is not None and retry >= policy.attempts:
                break
            delay = backoff_delay(policy, retry)
        # Gave up: closed for good, with what ended the connection.
        self._transition(ClientState.CLOSED)
        self._offline.clear()
        self._inflight.clear()
        self._set_closed(last_code, last_reason)

    async def _refresh(self) -> bool:
        """New credentials from ``token_refresh`` (False: none, stop reconnecting)."""
        if self._token_refresh is None or self._target is None:
            return False
        token = self._token_refresh()
        if inspect.isawaitable(token):
            token = await token
        if not token:
            return False
        self._target.set_token(token)
        return True

    async def _reopened(self) -> None:
        """The new connection greeted: send what waited, then tell the application."""
        self._transition(ClientState.OPEN)
        pending, self._offline = self._offline, deque()
        while pending:
            ack, text = pending[0]
            if not self._send_nowait(TextMessage(data=text)):
                break
            pending.popleft()
            if ack is not None:
                self._inflight[ack] = text
        if pending:
            # This socket ended too: what is left waits for the next one.
            self._offline.extend(pending)
            if self._eof:  # its reader finished while the client was still reconnecting
                self._socket_ended(*(self._socket_close or (ABNORMAL_CLOSURE, "")))
            return
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        if self._on_recover is not None:
            try:
                result = self._on_recover(self, self.recovered, dict(self.missed))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("on_recover raised")
        self.reconnects += 1  # counted once the application was told

    def _socket_ended(self, code: int, reason: str) -> None:
        """This TCP connection is over: reconnect, or close for good."""
        if self.state is ClientState.OPEN and self._should_reconnect(code):
            self._transition(ClientState.RECONNECTING)
            # What was written and not answered goes out again first, in send order.
            resend = [(ack, text) for ack, text in self._inflight.items()]
            self._inflight.clear()
            self.resent_calls += len(resend)
            self._offline.extendleft(reversed(resend))
            pause, self._drop_pause = self._drop_pause, None
            self._reconnect_task = asyncio.get_running_loop().create_task(
                self._reconnect_loop(pause)
            )
        elif self.state is ClientState.RECONNECTING:
            pass  # a failed attempt: the reconnect loop goes on
        else:
            if self.state is ClientState.OPEN:
                self._transition(ClientState.CLOSED)
            self._set_closed(code, reason)

    def _should_reconnect(self, code: int) -> bool:
        if self._reconnect is None:
            return False
        if code in CREDENTIAL_CLOSE_CODES:
            return self._token_refresh is not None
        return code not in FINAL_CLOSE_CODES

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
                self._end_with(CloseCode.MESSAGE_TOO_BIG, "message too big")
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
        self._on_message(message)

    def _on_message(self, message: PayloadDict) -> None:
        """One whole message of this socket, in arrival order."""
        name = message.get("event")
        if not self._greeted.done():
            if name == SystemEvent.CONNECT:
                self._on_greeting(message)
            else:
                self._early.append(message)
            return
        room, pos = message.get("room"), message.get("pos")
        if isinstance(room, str) and isinstance(pos, str):
            self.positions[room] = pos
            self.room_counts[room] += 1
        if name == SystemEvent.RECOVERY:
            token = (message.get("payload") or {}).get("token")
            self.recovery_token = token if isinstance(token, str) else None
            return
        if name == SystemEvent.ERROR:
            error = message.get("payload") or {}
            if error.get("code") in RECOVERY_ERROR_CODES and error.get("event") == "__connect__":
                self.recovery_error = error
                return
        if name == SystemEvent.SERVER_SHUTDOWN:
            recovery = (message.get("payload") or {}).get("recovery")
            if isinstance(recovery, dict) and "token" in recovery:
                token = recovery["token"]
                self.recovery_token = token if isinstance(token, str) else None
        if name in REPLY_EVENTS and "ack" in message:
            self._inflight.pop(message["ack"], None)
        if self._auto_pong and name == SystemEvent.PING:
            self._send_nowait(TextMessage(data=PONG_MESSAGE))
        self.inbox.put(message)

    def _on_greeting(self, message: PayloadDict) -> None:
        payload = message.get("payload")
        greeting: PayloadDict = payload if isinstance(payload, dict) else {}
        first = self.state is ClientState.CONNECTING
        previous_id = self.conn_id
        self.greeting = greeting
        conn_id = greeting.get("conn_id")
        self.conn_id = None if conn_id is None else str(conn_id)
        self.recovered = bool(greeting.get("recovered", False))
        missed = greeting.get("missed")
        self.missed = dict(missed) if isinstance(missed, dict) else {}
        recovery = greeting.get("recovery")
        token = recovery.get("token") if isinstance(recovery, dict) else None
        self.recovery_token = token if isinstance(token, str) else None
        if not first:
            self.recovery_error = None
            if self.conn_id != previous_id:
                self.positions.clear()  # a fresh session: its rooms are gone
            for room in self.missed:
                self.positions.pop(room, None)  # resynced by the app; the token's is newer
        self._greeted.set_result(greeting)
        if first:
            # Kept, like TestConnection keeps it: receive("__connect__") still finds it.
            self.inbox.put(message)
        for early in self._early:
            self.inbox.put(early)
        self._early.clear()

    def _on_pong(self, payload: bytes) -> None:
        for index, (data, _) in enumerate(self._pings):
            if data == payload:
                answered, self._pings = self._pings[: index + 1], self._pings[index + 1 :]
                for _, waiter in answered:
                    if not waiter.done():
                        waiter.set_result(None)
                return

    def _on_close(self, event: CloseConnection) -> None:
        self._end_with(event.code, event.reason or "")
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            self._send_nowait(event.response())
        elif state is ConnectionState.OPEN:
            # wsproto could not parse the server's frames (1002, 1007, ...): say so, and stop
            # reading a stream that can no longer be framed.
            self._send_nowait(event.response())
            self._stop_reading = True

    def _end_with(self, code: int, reason: str) -> None:
        """This socket is closing with ``code`` (the first side to close wins): a final close
        ends the client at once; one the client reconnects after waits for the socket's end."""
        if self._socket_close is None:
            self._socket_close = (int(code), reason)
        code, reason = self._socket_close
        if self.state is ClientState.RECONNECTING or (
            self.state is ClientState.OPEN and self._should_reconnect(code)
        ):
            return
        if self.state is ClientState.OPEN:
            self._transition(ClientState.CLOSED)
        self._set_closed(code, reason)

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
        """Record how the client closed for good (the first close wins) and wake waiters."""
        if self.close_code is None:
            self.close_code = int(code)
            self.close_reason = reason
        self.inbox.close(self.close_code, self.close_reason)
        self._fail_pings()

    def _fail_pings(self) -> None:
        pings, self._pings = self._pings, []
        for _, waiter in pings:
            if not waiter.done():
                code, reason = self._socket_close or (ABNORMAL_CLOSURE, "")
                waiter.set_exception(ConnectionClosed(code, reason))

    def _finish(self) -> None:
        self._eof = True
        code, reason = self._socket_close or (ABNORMAL_CLOSURE, "")
        if not self._handshake.done():
            self._handshake.set_exception(
                ConnectionClosed(ABNORMAL_CLOSURE, "connection closed during the opening handshake")
            )
        if not self._greeted.done():
            self._greeted.set_exception(ConnectionClosed(code, reason))
            self._greeted.exception()  # retrieved here; _open reads it again
        self._fail_pings()
        self._writer.close()
        self._socket_ended(code, reason)

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
        self._path = parts.path or "/"
        self._query = parts.query
        self.set_token(token)

    def set_token(self, token: str | None) -> None:
        """The credentials sent as ``token=`` (new ones after a refresh)."""
        query = self._query
        if token is not None:
            token_query = urlencode({"token": token})
            query = f"{query}&{token_query}" if query else token_query
        self._full_query = query
        self.resource = self._path + (f"?{query}" if query else "")

    def resource_with(self, extra: Mapping[str, str]) -> str:
        """The resource with more query parameters (``recover``, ``since``)."""
        if not extra:
            return self.resource
        query = "&".join(q for q in (self._full_query, urlencode(dict(extra))) if q)
        return f"{self._path}?{query}"


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
    reconnect: Reconnect | None,
    on_recover: OnRecover | None,
    max_offline: int,
    token_refresh: TokenRefresh | None,
) -> Client:
    client: Client | None = None
    opener = functools.partial(
        asyncio.open_connection,
        target.host,
        target.port,
        ssl=ssl_context,
        server_hostname=target.host if ssl_context is not None else None,
    )
    try:
        async with asyncio.timeout(open_timeout):
            reader, writer = await opener()
            client = Client(
                reader,
                writer,
                auto_pong=auto_pong,
                max_message_size=max_message_size,
                reconnect=reconnect,
                on_recover=on_recover,
                max_offline=max_offline,
                opener=opener,
                target=target,
                extra_headers=extra_headers,
                open_timeout=open_timeout,
                token_refresh=token_refresh,
            )
            request = Request(
                host=target.host_header, target=target.resource, extra_headers=extra_headers
            )
            await client._open(request, open_timeout)
            client._transition(ClientState.OPEN)
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
    reconnect: Reconnect | None = None,
    on_recover: OnRecover | None = None,
    max_offline: int = DEFAULT_MAX_OFFLINE,
    token_refresh: TokenRefresh | None = None,
) -> _Connecting:
    """Open a connection to ``url`` (``ws://`` or ``wss://``, path and optional query).

    ``await connect(...)`` returns the ``Client`` once the server accepted the upgrade and
    sent ``__connect__``; ``async with connect(...) as client:`` also closes it on exit.
    ``token`` is appended to the query as ``token=``, the way browsers pass it; ``origin``
    is sent as the Origin header (overriding one in ``headers``); ``ssl`` is the context
    for ``wss://`` (the system's default trust when None). ``open_timeout`` bounds the
    whole opening (TCP, TLS, upgrade, greeting), and each reconnection attempt.

    ``reconnect`` (a ``Reconnect``; None: a close is final) reconnects after an unexpected
    close and recovers the session; ``on_recover(client, recovered, missed)`` (plain or
    async) runs after every reconnection, ``missed`` naming the rooms whose history no
    longer covered the gap. ``max_offline`` bounds the messages ``emit`` queues meanwhile.
    ``token_refresh()`` (plain or async, returning a new token or None) is asked after a
    close for bad or expired credentials (4001-4003); without it those closes are final.

    Raises ``ConnectRefused`` when the upgrade is refused or the server closes before its
    greeting, ``TimeoutError`` after ``open_timeout``, ``ValueError`` for a bad URL or
    header, and ``OSError`` when the socket cannot be opened. The first opening is never
    retried.
    """
    target = _Target(url, token)
    if ssl is not None and not target.tls:
        raise ValueError("ssl= was given for a ws:// URL; use wss://")
    if max_offline < 0:
        raise ValueError("max_offline must be 0 or more")
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
        reconnect=reconnect,
        on_recover=on_recover,
        max_offline=max_offline,
        token_refresh=token_refresh,
    )
    return _Connecting(opener)
