"""One shard: a uvloop event loop, its own SO_REUSEPORT listener, and its connections.

Owns binding the listening socket (after fork, in the cluster), TLS, the
plain HTTP answers (``/healthz``, ``/readyz``, ``/metrics`` summed over the
cluster's shards by ``cluster.metrics_http``, ``/socketspec.js`` and the docs
through ``apidocs.routes``, 404), routing upgrade paths to
namespaces, the state shared by the shard's connection protocols, and the
graceful drain on SIGTERM/SIGINT: stop accepting, ``__server_shutdown__``,
running handlers and publish API requests finish within the graceful timeout,
close 1001, exit 0.
Signal handlers only set an event; the shard's main coroutine acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from socketspec import eager, metrics
from socketspec.apidocs.routes import CLIENT_PATH, client_reply, docs_response, is_docs_path
from socketspec.app import SocketApp
from socketspec.cluster import metrics_http
from socketspec.metrics import TALLY
from socketspec.push.api import parse_keys
from socketspec.push.service import PushService
from socketspec.server import http
from socketspec.server.caps import ConnectionCaps
from socketspec.server.config import ServerConfig
from socketspec.server.frames import FrameCache
from socketspec.server.protocol import WebSocketProtocol, new_protocol

logger = logging.getLogger("socketspec.server")

METRICS_FLUSH_INTERVAL = 1.0


class ShardContext:
    """What every connection protocol of one shard shares."""

    def __init__(
        self,
        app: SocketApp | None,
        config: ServerConfig,
        loop: asyncio.AbstractEventLoop,
        shard_id: int = 0,
    ) -> None:
        self.app = app
        self.config = config
        self.loop = loop
        self.shard_id = shard_id
        self.frames = FrameCache()
        self.protocols: set[WebSocketProtocol] = set()
        self.caps = ConnectionCaps(config.max_connections, config.max_per_ip)
        self.draining = False
        self.no_connections = asyncio.Event()
        self.no_connections.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unflushed: list[WebSocketProtocol] = []
        self._path = config.path.rstrip("/") or "/"
        # In a cluster: which shards this one can reach (set by the worker).
        self.peers: Callable[[], dict[int, bool]] | None = None
        # The HTTP publish API (/api/...), served only when an API key is configured.
        self.api: PushService | None = None
        keys = parse_keys((*config.api_keys, *(app.api_keys if app is not None else ())))
        if app is not None and keys:
            self.api = PushService(app, keys, config.max_message_size)

    @property
    def app_required(self) -> SocketApp:
        assert self.app is not None, "no application in echo mode"
        return self.app

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` up to its first suspension now (``socketspec.eager``), the rest in a
        task the shard keeps a reference to until it ends."""
        task = eager.start(self.loop, coro)
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def schedule_flush(self, protocol: WebSocketProtocol) -> None:
        """``protocol`` queued its first frame of this iteration: flush it at the end of it."""
        if not self._unflushed:
            self.loop.call_soon(self.flush_writes)
        self._unflushed.append(protocol)

    def quiet(self) -> bool:
        """At most one connection has frames waiting for the end-of-turn flush."""
        return len(self._unflushed) <= 1

    def flush_writes(self) -> None:
        """One write per connection for everything queued since the last flush."""
        unflushed, self._unflushed = self._unflushed, []
        for protocol in unflushed:
            protocol.flush()

    def track(self, protocol: WebSocketProtocol) -> None:
        self.protocols.add(protocol)
        self.no_connections.clear()

    def forget(self, protocol: WebSocketProtocol) -> None:
        self.protocols.discard(protocol)
        if not self.protocols:
            self.no_connections.set()

    def namespace_for(self, path: str) -> str | None:
        """The namespace served at ``path``: ``<path>`` is "/", ``<path>/x`` is "/x"."""
        if self.app is None:
            return "/"  # echo mode answers on every path
        namespace = http.namespace_at(self._path, path)
        if namespace is None:
            return None
        return namespace if self.app.serves_namespace(namespace) else None

    def http_response(self, head: http.RequestHead) -> bytes:
        """The answer to a request that is not a WebSocket upgrade."""
        if head.method not in ("GET", "HEAD"):
            return http.text_response(405, f"method {head.method} not allowed")
        if head.path in ("/healthz", "/readyz"):
            shards = {self.shard_id: not self.draining}
            if self.peers is not None:
                shards.update(self.peers())
            status = {str(i): "up" if up else "down" for i, up in sorted(shards.items())}
            if head.path == "/healthz":  # liveness: this shard answers
                return http.json_response(
                    200, {"status": "ok", "shard": self.shard_id, "shards": status}
                )
            ready = all(shards.values())  # readiness: every shard serves
            return http.json_response(
                200 if ready else 503,
                {
                    "ready": ready,
                    "shard": self.shard_id,
                    "shards": status,
                    "connections": len(self.protocols),
                },
            )
        if head.path == "/metrics" and self.config.serve_metrics:
            scrape = metrics_http.answer(self.config.metrics_token, head.header_map, head.query)
            return http.response(scrape.status, scrape.body, scrape.content_type, scrape.headers)
        if head.path == CLIENT_PATH:  # public, with or without docs (apidocs/routes.py)
            return client_reply(head.header_map).encode()
        if self.app is not None and is_docs_path(self.app, head.path):
            return docs_response(
                self.app, head.path, head.header_map, head.query, ws_path=self.config.path
            )
        if self.namespace_for(head.path) is not None:
            return http.text_response(426, "this endpoint only speaks WebSocket")
        return http.text_response(404, f"not found: {head.path}")


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket with SO_REUSEPORT, so that several shards share the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


class Shard:
    def __init__(self, app: SocketApp | None, config: ServerConfig, shard_id: int = 0) -> None:
        self.app = app
        self.config = config
        self.shard_id = shard_id
        self.ctx: ShardContext | None = None
        self._server: asyncio.Server | None = None
        self._stop = asyncio.Event()
        self.port: int | None = None
        self._flusher: asyncio.TimerHandle | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        if self.app is not None:
            self.app.startup()
            self.app.server_info["shard"] = self.shard_id
        ctx = self.ctx = ShardContext(self.app, config, loop, self.shard_id)
        if sock is None:
            sock = bind_socket(config.host, config.port, config.backlog)
        context = None
        if config.certfile:
            context = tls_context(config.certfile, config.keyfile or config.certfile)
        self._server = await loop.create_server(
            lambda: new_protocol(ctx),
            sock=sock,
            ssl=context,
            backlog=config.backlog,
            # the handshake deadline covers TLS too: connection_made only comes after it
            ssl_handshake_timeout=config.handshake_timeout if context is not None else None,
        )
        self.port = sock.getsockname()[1]
        self._flusher = loop.call_later(METRICS_FLUSH_INTERVAL, self._flush_metrics)

    def _flush_metrics(self, reschedule: bool = True) -> None:
        """Fold this shard's tally into its Prometheus values (see socketspec.metrics)."""
        ctx = self.ctx
        assert ctx is not None
        metrics.mailbox_depth.set(sum(p.mailbox_depth for p in ctx.protocols))
        TALLY.flush()
        if reschedule:
            self._flusher = ctx.loop.call_later(METRICS_FLUSH_INTERVAL, self._flush_metrics)

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets an event."""
        self._stop.set()

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT (or ``request_stop``), then drain."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        await self._stop.wait()
        await self.drain()

    async def drain(self) -> None:
        ctx = self.ctx
        assert ctx is not None and self._server is not None
        ctx.draining = True
        self._server.close()  # stop accepting; open connections stay
        if ctx.api is not None:  # requests taken go on; later ones are refused with 503
            ctx.api.begin_drain()
        # Connections accepted just before are still upgrading: let them open first, so
        # that they are told to move (__server_shutdown__) rather than refused.
        deadline = ctx.loop.time() + self.config.handshake_timeout
        # A bounded poll over this shard's own handshakes, once per shutdown.
        while ctx.loop.time() < deadline and any(p.opening for p in ctx.protocols):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        timeout = self.config.graceful_timeout
        if self.app is not None:
            # Publish API requests in flight are waited for like running handlers, before
            # the connections they may be sending to close; past the timeout, what they have
            # not sent yet is refused in their answers.
            api = ctx.api
            await self.app.drain(timeout, busy=api.idle.wait() if api is not None else None)
            if api is not None:
                await api.cut(self.config.close_timeout)
        else:
            for protocol in list(ctx.protocols):
                protocol.close_now(1001, "server shutdown")
        # Every connection got its close frame; wait (bounded) for the closing handshakes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.no_connections.wait(), self.config.close_timeout)
        for protocol in list(ctx.protocols):
            protocol._abort()
        await asyncio.sleep(0)
        if self._flusher is not None:
            self._flusher.cancel()
        self._flush_metrics(reschedule=False)
