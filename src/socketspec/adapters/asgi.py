"""The ASGI entry: one ``SocketApp`` served by any ASGI server, in that server's process.

Owns the three ASGI scopes for the socket: ``websocket`` (one connection, admitted by
``SocketApp.accept`` and driven through the ``ConnectionHandle`` it returns, exactly as the
shard's protocol drives it, with the project's limits kept whatever the server:
``max_payload_size`` by the pipeline, and the shard's ``OutboundQueue`` between the
application and one writer task: past ``max_outbound`` waiting, a client that stopped
reading loses its backlog and is closed with 4008), ``http`` (the docs
page, its schema, its assets and ``/asyncapi.json`` through ``docs.routes``, and the browser
client at ``/socketspec.js`` with or without docs; 426 on the WebSocket path; 404
elsewhere) and ``lifespan`` (startup validation; on shutdown the cluster's drain:
``__server_shutdown__``, running handlers finish, close 1001). Since
uvicorn closes its WebSocket connections (1012) before it tells the application to shut
down, the entry also takes the server's SIGINT/SIGTERM first, drains, then hands the
signal on. Does not own frames or the HTTP upgrade: the ASGI server does, and it buffers a
whole message before handing it over (uvicorn's ``ws_max_size``, 16 MiB by default, closes a
larger one with 1009 itself); the entry closes with 1009 any message it is handed above
``max_message_size`` (the cluster's ``--max-message-size``), whatever the server's own cap.
The entry records the frame, byte and close metrics the shard records, and folds the
per-message tally into Prometheus once a second while the lifespan runs.

``with_socket(app, socket)`` puts the entry in front of another ASGI application;
``socketspec.adapters.fastapi.mount`` does it with FastAPI's routes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from types import FrameType
from typing import Any

from socketspec import metrics
from socketspec.adapters.scope import header_map, query_params, route_path
from socketspec.apidocs.routes import CLIENT_PATH, client_reply, docs_reply, is_docs_path
from socketspec.app import SocketApp
from socketspec.errors import CloseCode, ConnectionAuthError, ConnectRejected
from socketspec.handle import ConnectionHandle
from socketspec.metrics import TALLY
from socketspec.server import http
from socketspec.server.outbound import OutboundQueue

logger = logging.getLogger("socketspec.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIB = 1024 * 1024
DEFAULT_MAX_OUTBOUND = MIB  # as the cluster's --max-outbound
DEFAULT_MAX_MESSAGE_SIZE = 16 * MIB  # as the cluster's --max-message-size
DEFAULT_GRACEFUL_TIMEOUT = 30.0  # as the cluster's --graceful-timeout
DEFAULT_CLOSE_TIMEOUT = 5.0  # for the peer's close frame after ours, then the connection is left
METRICS_FLUSH_INTERVAL = 1.0  # as a shard's

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Closing before the accept makes the server refuse the upgrade (403); the code is not sent.
_REFUSED = 1008


class Phase(Enum):
    CONNECTING = "connecting"  # websocket.connect received, not accepted yet
    OPEN = "open"  # accepted: messages flow both ways
    CLOSING = "closing"  # our close is queued behind the messages before it
    CLOSED = "closed"  # the server reported the end, or we stopped waiting for it


PHASES: dict[Phase, frozenset[Phase]] = {
    Phase.CONNECTING: frozenset({Phase.OPEN, Phase.CLOSED}),
    Phase.OPEN: frozenset({Phase.CLOSING, Phase.CLOSED}),
    Phase.CLOSING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
}


class _TextCache:
    """A broadcast hands the same envelope bytes to every member, whose writers send them
    one after the other: decode them once for all (ASGI sends text as ``str``)."""

    __slots__ = ("_bytes", "_text")

    def __init__(self) -> None:
        self._bytes: bytes | None = None
        self._text = ""

    def text(self, data: bytes) -> str:
        if data is not self._bytes:
            self._text = data.decode()
            self._bytes = data
        return self._text


class ASGIConnection:
    """One WebSocket connection's ``Transport``: writes go to a bounded queue that one
    writer task hands to the server's ``send``."""

    def __init__(self, entry: SocketASGI, send: Send) -> None:
        self._entry = entry
        self._send = send
        self.phase = Phase.CONNECTING
        self.handle: ConnectionHandle | None = None
        self._queue = OutboundQueue(chunk=1)  # one message per send
        self._close: tuple[int, str] | None = None
        self._wake = asyncio.Event()
        # Set when the connection should be left: the server reported its end, or our close
        # got no answer within close_timeout.
        self.done = asyncio.Event()
        self._give_up: asyncio.TimerHandle | None = None
        # A recovering connection's replay waits here for the queue to drain.
        self._writable: asyncio.Future[None] | None = None

    @property
    def max_outbound(self) -> int:
        return self._entry.max_outbound

    def outbound_backlog(self) -> int:
        """Message bytes queued and not yet sent (what ``max_outbound`` bounds)."""
        return self._queue.queued_bytes

    async def wait_writable(self) -> None:
        """Until the writer task sends a message (or the connection is left)."""
        if self.phase is not Phase.OPEN:
            return
        waiter = self._writable
        if waiter is None or waiter.done():
            waiter = self._writable = asyncio.get_running_loop().create_future()
        await waiter

    def _wake_writer(self) -> None:
        waiter = self._writable
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _enter(self, phase: Phase) -> None:
        if phase not in PHASES[self.phase]:
            raise RuntimeError(f"connection cannot move from {self.phase.value} to {phase.value}")
        self.phase = phase

    async def accept(self) -> None:
        self._enter(Phase.OPEN)
        await self._send({"type": "websocket.accept"})

    # -- the application's Transport ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue one JSON envelope; past max_outbound waiting, drop the backlog (counted) and
        close with 4008, as the shard does."""
        if self.phase is not Phase.OPEN:
            return
        queue = self._queue
        queue.push((data,))
        if not queue.over(self._entry.max_outbound):
            self._wake.set()
            return
        dropped = queue.drop()
        metrics.slow_consumer_closes.inc()
        metrics.outbound_dropped_frames.inc(dropped.frames)
        metrics.outbound_dropped_bytes.inc(dropped.size)
        self.close_now(CloseCode.SLOW_CONSUMER, "slow consumer")
        handle = self.handle
        if handle is not None:  # the application's bookkeeping: hooks, rooms, the close metric
            self._entry.spawn(handle.close(CloseCode.SLOW_CONSUMER, "slow_consumer"))

    async def close(self, code: int, reason: str) -> None:
        self.close_now(code, reason)

    def flush_if_quiet(self) -> None:
        """Nothing to flush here: the writer task sends as soon as messages are queued."""

    def close_now(self, code: int, reason: str) -> None:
        """Queue our close after the messages before it; leave the connection if the peer has
        not closed within close_timeout."""
        if self.phase is not Phase.OPEN:
            return
        self._enter(Phase.CLOSING)
        self._wake_writer()
        self._close = (code, reason)
        self._wake.set()
        self._give_up = asyncio.get_running_loop().call_later(
            self._entry.close_timeout, self.done.set
        )

    # -- the writer task ---------------------------------------------------------------------

    async def write_loop(self) -> None:
        try:
            await self._write_all()
        except Exception as exc:
            # The server refuses further sends once the client is gone (uvicorn raises
            # ClientDisconnected); what was still queued has no one to go to.
            logger.debug("send failed, leaving the connection: %r", exc)
            self.done.set()

    async def _write_all(self) -> None:
        queue = self._queue
        send = self._send
        texts = self._entry.texts
        while True:
            frames = queue.take()
            for frame in frames:
                await send({"type": "websocket.send", "text": texts.text(frame)})
                TALLY.add(metrics.frames_sent)
                TALLY.add(metrics.bytes_sent, len(frame))
            if frames:
                self._wake_writer()
                continue
            if self._close is not None:
                code, reason = self._close
                await send({"type": "websocket.close", "code": code, "reason": reason})
                return
            self._wake.clear()
            await self._wake.wait()

    def finished(self) -> None:
        self._wake_writer()
        if self._give_up is not None:
            self._give_up.cancel()
            self._give_up = None
        if self.phase is not Phase.CLOSED:
            self._enter(Phase.CLOSED)
        self.done.set()


class _StopSignals:
    """Takes the server's SIGINT/SIGTERM before the server does: the first one drains, then
    reaches the server's own handler; a second one during the drain reaches it at once.

    The handler only enqueues; the loop dispatches. Only handlers installed with
    ``signal.signal`` (uvicorn's) are taken over. Servers that stop their workers another
    way (hypercorn's and granian's supervisors) are left alone: they end the connections
    before the lifespan's shutdown, so the drain there finds none (docs/asgi.md).
    """

    def __init__(self, drain: Callable[[], Awaitable[None]]) -> None:
        self._drain = drain
        self._previous: dict[int, Callable[[int, FrameType | None], Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for signum in _STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if not callable(previous) or previous is signal.default_int_handler:
                continue
            if getattr(previous, "__name__", "") == "_sighandler_noop":  # asyncio's own
                continue
            self._previous[signum] = previous
            signal.signal(signum, self._on_signal)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, signum, frame)

    def _dispatch(self, signum: int, frame: FrameType | None) -> None:
        if self._draining is None:
            assert self._loop is not None
            self._draining = self._loop.create_task(self._drain_then_forward(signum, frame))
        else:
            self._forward(signum, frame)

    async def _drain_then_forward(self, signum: int, frame: FrameType | None) -> None:
        try:
            await self._drain()
        finally:
            self._forward(signum, frame)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum)
        if previous is not None:
            previous(signum, frame)


class SocketASGI:
    """The ASGI application serving ``socket`` at ``path`` (``<path>/<ns>`` for namespace
    ``/<ns>``) and its docs; ``socket=None`` echoes every message back (conformance runs).

    Args:
        max_outbound: bytes of messages waiting for a client before it is closed with 4008.
        max_message_size: a received message above it closes the connection with 1009.
        graceful_timeout: seconds running handlers get to finish on shutdown.
        close_timeout: seconds to wait for the peer's close frame after ours.
        drain_on_signal: take the server's SIGINT/SIGTERM first to drain (see the module).
    """

    def __init__(
        self,
        socket: SocketApp | None,
        *,
        path: str = "/ws",
        max_outbound: int = DEFAULT_MAX_OUTBOUND,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        drain_on_signal: bool = True,
    ) -> None:
        if max_outbound <= 0:
            raise ValueError("max_outbound must be positive")
        if max_message_size <= 0:
            raise ValueError("max_message_size must be positive")
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/', got {path!r}")
        self.socket = socket
        self.path = path.rstrip("/") or "/"
        self.max_outbound = max_outbound
        self.max_message_size = max_message_size
        self.graceful_timeout = graceful_timeout
        self.close_timeout = close_timeout
        self.texts = _TextCache()
        self._signals = _StopSignals(self.drain) if drain_on_signal else None
        self._connections: set[ASGIConnection] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._draining: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.TimerHandle | None = None

    @property
    def app_required(self) -> SocketApp:
        assert self.socket is not None, "no application in echo mode"
        return self.socket

    def spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(scope, receive, send)

    def namespace_for(self, scope: Scope) -> str | None:
        namespace = http.namespace_at(self.path, route_path(scope))
        if namespace is None:
            return None
        if self.socket is None:
            return namespace
        return namespace if self.socket.serves_namespace(namespace) else None

    def serves_path(self, scope: Scope) -> bool:
        """Whether a request for ``scope`` is this entry's (its WebSocket path or the docs)."""
        path = route_path(scope)
        if path == CLIENT_PATH or (self.socket is not None and is_docs_path(self.socket, path)):
            return True
        return http.namespace_at(self.path, path) is not None

    # -- lifespan ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Validate the registrations (raises before anything is served); take the signals."""
        if self.socket is not None:
            self.socket.startup()
        if self._signals is not None:
            self._signals.install()
        self._flusher = asyncio.get_running_loop().call_later(
            METRICS_FLUSH_INTERVAL, self._flush_metrics
        )

    async def shutdown(self) -> None:
        if self._signals is not None:
            self._signals.restore()
        await self.drain()
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        TALLY.flush()

    def _flush_metrics(self) -> None:
        """Fold the per-message tally into Prometheus (see socketspec.metrics)."""
        TALLY.flush()
        self._flusher = asyncio.get_running_loop().call_later(
            METRICS_FLUSH_INTERVAL, self._flush_metrics
        )

    async def drain(self) -> None:
        """The cluster's drain, once: ``__server_shutdown__``, handlers finish within
        graceful_timeout, close 1001, then (bounded) the closing handshakes."""
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain())
        await asyncio.shield(self._draining)

    async def _drain(self) -> None:
        if self.socket is not None:
            await self.socket.drain(self.graceful_timeout)
        for connection in list(self._connections):
            connection.close_now(CloseCode.SERVER_SHUTDOWN, "server shutdown")
        try:
            await asyncio.wait_for(self._no_connections.wait(), self.close_timeout)
        except TimeoutError:
            logger.warning("connections still open after the drain; leaving them to the server")

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": _failure(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- http --------------------------------------------------------------------------------

    def ws_url(self, scope: Scope) -> str:
        """The WebSocket path as a browser reaches it (with any prefix the app is under)."""
        return (scope.get("root_path") or "").rstrip("/") + self.path

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        method = scope.get("method", "GET")
        socket = self.socket
        if method not in ("GET", "HEAD"):
            reply = http.text_reply(405, f"method {method} not allowed")
        elif path == CLIENT_PATH:
            reply = client_reply(header_map(scope.get("headers", ())))
        elif socket is not None and is_docs_path(socket, path):
            reply = docs_reply(
                socket,
                path,
                header_map(scope.get("headers", ())),
                query_params(scope.get("query_string", b"")),
                ws_path=self.ws_url(scope),
            )
        elif self.namespace_for(scope) is not None:
            reply = http.text_reply(426, "this endpoint only speaks WebSocket")
        else:
            reply = http.text_reply(404, f"not found: {path}")
        await send_reply(send, reply, head_only=method == "HEAD")

    # -- websocket ---------------------------------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        namespace = self.namespace_for(scope)
        if namespace is None:
            await refuse(scope, send, 404, f"no WebSocket endpoint at {route_path(scope)}")
            return
        if self._draining is not None:
            await refuse(scope, send, 503, "server shutting down")
            return
        socket = self.socket
        headers = header_map(scope.get("headers", ()))
        if socket is not None:
            refusal = socket.check_origin(headers)
            if refusal is not None:
                await refuse(scope, send, 403, f"forbidden: {refusal}")
                return
        connection = ASGIConnection(self, send)
        await connection.accept()
        self._connections.add(connection)
        self._no_connections.clear()
        try:
            if socket is None:
                await self._echo(connection, receive, send)
            else:
                await self._serve(socket, connection, scope, headers, namespace, receive)
        finally:
            connection.finished()
            self._connections.discard(connection)
            if not self._connections:
                self._no_connections.set()

    async def _echo(self, connection: ASGIConnection, receive: Receive, send: Send) -> None:
        """Echo mode: every message goes back as it came, one at a time (nothing queues)."""
        while True:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await send({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
            elif message["type"] == "websocket.disconnect":
                return

    async def _serve(
        self,
        socket: SocketApp,
        connection: ASGIConnection,
        scope: Scope,
        headers: dict[str, str],
        namespace: str,
        receive: Receive,
    ) -> None:
        writer = asyncio.ensure_future(connection.write_loop())
        try:
            try:
                handle = await socket.accept(
                    connection,
                    headers,
                    query_params(scope.get("query_string", b"")),
                    namespace=namespace,
                )
            except ConnectionAuthError:
                # AUTH_ERROR was queued and close(4001) called by the application.
                await self._until_done(connection, receive, writer)
                return
            except ConnectRejected as exc:
                connection.close_now(CloseCode.PROTOCOL_ERROR, str(exc))
                await self._until_done(connection, receive, writer)
                return
            except Exception:
                logger.exception("connect failed")
                connection.close_now(CloseCode.INTERNAL_ERROR, "internal error")
                await self._until_done(connection, receive, writer)
                return
            connection.handle = handle
            reason = "connection_lost"
            try:
                reason = await self._until_done(connection, receive, writer, handle)
            finally:
                await handle.disconnect(reason)
        finally:
            writer.cancel()

    async def _until_done(
        self,
        connection: ASGIConnection,
        receive: Receive,
        writer: asyncio.Future[None],
        handle: ConnectionHandle | None = None,
    ) -> str:
        """Read messages (into the application when ``handle`` is given) until the server
        reports the end or our close went unanswered; the reason for the on_disconnect hooks."""
        reader = asyncio.ensure_future(self._read(connection, receive, handle))
        given_up = asyncio.ensure_future(connection.done.wait())
        try:
            await asyncio.wait({reader, given_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            given_up.cancel()
            if not reader.done():
                reader.cancel()
        if reader.done() and not reader.cancelled() and reader.exception() is None:
            return reader.result()
        return "close_timeout"

    async def _read(
        self, connection: ASGIConnection, receive: Receive, handle: ConnectionHandle | None
    ) -> str:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if handle is None or connection.phase is not Phase.OPEN:
                    continue  # after our close, messages are not read
                text = message.get("text")
                data: str | bytes | None = text if text is not None else message.get("bytes")
                if data is None:
                    continue
                TALLY.add(metrics.frames_received)
                TALLY.add(metrics.bytes_received, len(data))
                if len(data) > self.max_message_size:
                    # The server already buffered it; the application never sees it.
                    metrics.connection_closes.labels(code=str(int(CloseCode.MESSAGE_TOO_BIG))).inc()
                    connection.close_now(CloseCode.MESSAGE_TOO_BIG, "message too big")
                    continue
                await handle.send(data)
            elif kind == "websocket.disconnect":
                return "client_close" if connection.phase is Phase.OPEN else "server_close"


async def refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Refuse a handshake: with its own status where the server lets the application answer
    the upgrade with an HTTP response, else with the server's 403."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        reply = http.text_reply(status, reason)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", reply.content_type), *reply.extra],
            }
        )
        await send({"type": "websocket.http.response.body", "body": reply.body})
    else:
        await send({"type": "websocket.close", "code": _REFUSED})


async def send_reply(send: Send, reply: http.Reply, *, head_only: bool = False) -> None:
    headers = [(b"content-type", reply.content_type), *reply.extra]
    if reply.status != 304:  # a 304's content-length would have to be the 200's
        headers.insert(1, (b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else reply.body})


def with_socket(
    app: ASGIApp,
    socket: SocketApp,
    *,
    path: str = "/ws",
    max_outbound: int = DEFAULT_MAX_OUTBOUND,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
) -> ASGIApp:
    """An ASGI application serving ``socket`` at ``path`` and its docs in front of ``app``,
    which gets every other request; the lifespan is both's (ours starts first and drains
    before ``app`` shuts down)."""
    entry = SocketASGI(
        socket,
        path=path,
        max_outbound=max_outbound,
        max_message_size=max_message_size,
        graceful_timeout=graceful_timeout,
    )

    async def combined(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _shared_lifespan(entry, app, scope, receive, send)
        elif kind in ("http", "websocket") and entry.serves_path(scope):
            await entry(scope, receive, send)
        else:
            await app(scope, receive, send)

    return combined


def echo_app() -> SocketASGI:
    """An entry that echoes every message on every path, for the conformance suite:
    ``uvicorn --factory socketspec.adapters.asgi:echo_app``."""
    return SocketASGI(None, path="/")


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class _StartupFailed(Exception):
    pass


async def _shared_lifespan(
    entry: SocketASGI, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run ``app``'s lifespan with the entry's startup before its own and the drain before
    its own shutdown."""

    async def receive_for_app() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await entry.startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": _failure(exc)})
                raise _StartupFailed from exc
        elif message["type"] == "lifespan.shutdown":
            await entry.shutdown()
        return message

    try:
        await app(scope, receive_for_app, send)
    except _StartupFailed:
        return
