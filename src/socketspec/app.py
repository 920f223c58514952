"""``SocketApp``: the application object users decorate, and its transport-facing entry points.

Owns the application's configuration, its registrations (events, middleware,
hooks, guards, rooms), startup validation, and the lifecycle of connections
as seen by the application: ``accept`` (origin, auth, binding, the
``__connect__`` greeting, hooks) returns the ``ConnectionHandle`` that every
transport (the shard's WebSocket server, the ASGI adapter, the TestClient)
keeps and drives (``handle.py``); ``handle_disconnect`` (rooms left, hooks,
cleanup) and ``close_connection`` end it. Connection-state recovery happens at
accept too (docs/recovery.md): a ``?recover=`` token honoured brings back the
session's id, identity, metadata and rooms, with each room's missed messages
replayed before live ones; the app sends each connection its recovery tokens
and keeps closed sessions' ack replies for the window (``ParkedSessions``). ``handle_connect`` and
``handle_event`` keep the reference's signatures for transports written
against them. Does not own bytes on the wire or sockets.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal, TypeVar

import orjson

from socketspec import eager, envelope, metrics
from socketspec.backends.base import ParkedAcks, RoomStore
from socketspec.backends.memory import MemoryRoomStore
from socketspec.backends.redis import RedisBackend
from socketspec.connection import Connection, Identity, SessionInfo, utcnow
from socketspec.errors import (
    AuthenticationError,
    CloseCode,
    ConfigurationError,
    ConnectionAuthError,
    ErrorCode,
    EventError,
    OriginNotAllowedError,
    RoomPermissionError,
    SystemEvent,
    UnknownNamespaceError,
)
from socketspec.handle import ConnectionHandle
from socketspec.history import Coverage, HistoryPolicy, Position
from socketspec.hooks import HookName, Hooks
from socketspec.middleware import Middleware
from socketspec.pipeline import EventPipeline
from socketspec.recovery import (
    AckCache,
    ParkedSessions,
    Recovery,
    Refusal,
    SessionState,
    TokenIdentity,
    TokenSigner,
    current_node,
    resolve_secret,
)
from socketspec.registry import (
    Broadcasts,
    Emits,
    EventDefinition,
    EventRegistry,
    normalize_namespace,
)
from socketspec.rooms import Room, RoomManager
from socketspec.runtime import ConnectionRuntime, Transport
from socketspec.security.auth import AuthBackend
from socketspec.security.origins import OriginPolicy
from socketspec.security.ratelimit import RateLimit, TokenBucket
from socketspec.session import SessionConfig
from socketspec.state import ConnState
from socketspec.types import (
    ConnectionId,
    EventName,
    Namespace,
    PayloadDict,
    RawSocket,
    RoomName,
)
from socketspec.users import UserManager

logger = logging.getLogger("socketspec")

F = TypeVar("F", bound=Callable[..., Any])

# On shutdown, how long events that were already in flight are still taken.
DRAIN_SETTLE = 0.1
# A session taken over while its old connection is still open (the server had not seen
# the drop): how long that connection's running handlers may take before it is closed.
RESUME_HANDLER_WAIT = 5.0
# The query parameters of a recovery; removed from ``conn.query_params``.
RECOVER_PARAM = "recover"
SINCE_PARAM = "since"
_REFUSAL_OUTCOMES = {
    ErrorCode.RECOVERY_INVALID: "invalid",
    ErrorCode.RECOVERY_EXPIRED: "expired",
    ErrorCode.RECOVERY_FOREIGN: "foreign",
}


class SocketApp:
    """A WebSocket event application.

    Args:
        docs: serve the interactive docs page and the schema documents.
        docs_url: path of the docs page.
        docs_access_token: token required (Bearer header or ``?token=``) to see the docs.
        auth: an auth backend (``JWTAuth``, ``APIKeyAuth`` or any object with
            ``authenticate(headers, query_params)``); None admits everyone.
        backend: ``"memory"``, a ``RoomStore`` holding room membership, or a
            ``RedisBackend``: rooms shared with every node on that Redis when served by
            ``socketspec-cluster`` (in memory in one process, as with the TestClient).
        allowed_origins: exact Origin values admitted; ``["*"]`` (the default) admits all.
        max_payload_size: largest inbound message in bytes; larger ones get ``PAYLOAD_TOO_LARGE``.
        rate_limit: a per-connection token bucket, or None for no limit.
        session: heartbeat and lifetime settings (``SessionConfig()`` by default).
        rooms: static rooms and room templates.
        namespace: the namespace this app's events belong to.
        debug: send handler exception text to clients (never in production).
        debug_url: the reference's path for its debug log page. Accepted and kept (as
            ``app.debug_url``) so reference code constructs unchanged; this project serves
            no page there: what happens on a connection is in its logs and ``/metrics``.
        history_size: messages kept per room for rooms without their own ``Room`` (0: no
            history; never for ``socket.users``' rooms); ``history_ttl`` their age limit.
        recovery: connection-state recovery settings (``Recovery()`` by default); None
            disables it (no tokens, ``?recover=`` ignored).
    """

    def __init__(
        self,
        *,
        docs: bool = False,
        docs_url: str = "/socket-docs",
        docs_access_token: str | None = None,
        auth: AuthBackend | None = None,
        backend: Literal["memory"] | RoomStore | RedisBackend = "memory",
        allowed_origins: Iterable[str] | None = None,
        max_payload_size: int = 65536,
        rate_limit: RateLimit | None = None,
        session: SessionConfig | None = None,
        rooms: Iterable[Room] | None = None,
        namespace: Namespace = "/",
        debug: bool = False,
        debug_url: str = "/socket-debug",
        api_keys: Iterable[str] = (),
        history_size: int = 0,
        history_ttl: float = 300.0,
        recovery: Recovery | None = Recovery(),  # noqa: B008 (frozen, shared safely)
    ) -> None:
        if max_payload_size <= 0:
            raise ConfigurationError("max_payload_size must be positive")
        if not debug_url.startswith("/"):
            raise ConfigurationError(
                f"debug_url must be a path starting with '/', got {debug_url!r}"
            )
        if auth is not None and not callable(getattr(auth, "authenticate", None)):
            raise ConfigurationError("auth must have an authenticate(headers, query_params) method")
        self.docs = docs
        self.docs_url = docs_url
        self.docs_access_token = docs_access_token
        self.auth = auth
        self.allowed_origins = list(allowed_origins) if allowed_origins is not None else ["*"]
        self.origin_policy = OriginPolicy(self.allowed_origins)
        self.max_payload_size = max_payload_size
        self.rate_limit = rate_limit
        self.session = session if session is not None else SessionConfig()
        self.namespace = normalize_namespace(namespace)
        self.debug = debug
        self.debug_url = debug_url
        # Keys of the HTTP publish API on socketspec-cluster (besides its --api-key flags).
        self.api_keys = tuple(api_keys)
        # Read by socketspec-cluster, which gives its shards' room stores a bridge to Redis.
        self.redis: RedisBackend | None = None
        if backend == "memory":
            store: RoomStore = MemoryRoomStore()
        elif isinstance(backend, RedisBackend):
            self.redis = backend
            store = MemoryRoomStore()
        elif isinstance(backend, RoomStore):
            store = backend
        elif callable(getattr(backend, "add_to_room", None)):
            raise ConfigurationError(
                f"backend {type(backend).__name__} has the reference's key-value methods "
                "(add_to_room, get_room_members, ...); socketspec needs a RoomStore "
                "(socketspec.backends.base.BackendAdapter), 'memory' or a RedisBackend"
            )
        else:
            raise ConfigurationError(
                f"backend must be 'memory', a RoomStore or a RedisBackend, got {backend!r}"
            )
        self.registry = EventRegistry()
        self.registry.add_namespace(self.namespace)
        self.hooks = Hooks()
        self.rooms = RoomManager(store, self.hooks)
        self.users = UserManager(self.rooms)
        for room in rooms or ():
            self.rooms.add_room(room)
        if history_size < 0 or history_ttl < 0:
            raise ConfigurationError("history_size and history_ttl must not be negative")
        self.rooms.default_history = (
            HistoryPolicy(history_size, history_ttl) if history_size else None
        )
        self.recovery = recovery
        # The history domain of this process's tokens; None: from the environment (the
        # cluster's supervisor draws one), read with the secret at the first connection,
        # after a cluster's shards have forked. Set before the first connection.
        self.recovery_node: str | None = None
        self._signer: TokenSigner | None = None
        self._shutting_down = False  # set by drain()
        # Closed connections whose handlers still run; their replies are parked when done.
        self._finishing: dict[ConnectionId, asyncio.Future[None]] = {}
        self.parked: ParkedSessions | None = None
        self._middlewares: list[Middleware] = []
        self._pipeline: EventPipeline | None = None
        self._runtimes: dict[ConnectionId, ConnectionRuntime] = {}
        # Added to every __connect__ greeting by the server (the shard number, for one).
        self.server_info: dict[str, Any] = {}

    # -- registration --------------------------------------------------------------------------

    def on(
        self,
        event: EventName,
        *,
        description: str = "",
        tags: list[str] | None = None,
        emits: list[Emits] | None = None,
        broadcasts: list[Broadcasts] | None = None,
        ordered: bool = False,
        deprecated: bool = False,
        namespace: Namespace | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of ``event``."""

        def decorator(handler: F) -> F:
            self._ensure_not_started("register an event handler")
            definition = EventDefinition.from_handler(
                event,
                normalize_namespace(namespace) if namespace is not None else self.namespace,
                handler,
                description=description,
                tags=tags or (),
                emits=emits or (),
                broadcasts=broadcasts or (),
                ordered=ordered,
                deprecated=deprecated,
            )
            self.registry.register(definition)
            return handler

        return decorator

    def middleware(self, func: F) -> F:
        """Register ``async def mw(conn, event, payload, next_handler)``; first added runs first."""
        self._ensure_not_started("add middleware")
        self._middlewares.append(func)
        return func

    def _hook(self, name: HookName, func: F) -> F:
        self.hooks.add(name, func)
        return func

    def on_connect(self, func: F) -> F:
        return self._hook("on_connect", func)

    def on_disconnect(self, func: F) -> F:
        return self._hook("on_disconnect", func)

    def on_error(self, func: F) -> F:
        return self._hook("on_error", func)

    def on_room_join(self, func: F) -> F:
        return self._hook("on_room_join", func)

    def on_room_leave(self, func: F) -> F:
        return self._hook("on_room_leave", func)

    def room_guard(self, pattern: str) -> Callable[[F], F]:
        """Register ``guard(conn, **variables) -> bool`` for rooms matching ``pattern``."""

        def decorator(guard: F) -> F:
            self.rooms.add_guard(pattern, guard)
            return guard

        return decorator

    def use_store(self, store: RoomStore) -> None:
        """Hold room membership in ``store`` (the cluster's) instead; before any connection."""
        if self._runtimes:
            raise ConfigurationError("cannot change the room store while connections are open")
        self.rooms.replace_store(store)
        if self.started:  # startup() gave the old store these; the new one needs them too
            store.use_history(self.rooms.history_policy)
            if self.recovery is not None:
                store.on_resume = self._resume_here

    def include(self, other: SocketApp) -> None:
        """Merge another app's events (by namespace), middleware, hooks, guards and rooms."""
        self._ensure_not_started("include another app")
        self.registry.merge(other.registry)
        self._middlewares.extend(other._middlewares)
        self.hooks.include(other.hooks)
        self.rooms.include(other.rooms)
        # The other app's handlers reach rooms through ``other.rooms``: share ours.
        other.rooms = self.rooms
        other.users = self.users

    def _ensure_not_started(self, what: str) -> None:
        if self._pipeline is not None:
            raise ConfigurationError(f"cannot {what} after the app has started")

    # -- startup -------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._pipeline is not None

    def startup(self) -> None:
        """Validate registrations and compile the pipeline; idempotent.

        Raises DuplicateEventError or ReservedEventNameError before any connection is served.
        """
        if self._pipeline is not None:
            return
        self.registry.validate()
        store = self.rooms.store
        store.use_history(self.rooms.history_policy)
        recovery = self.recovery
        if recovery is not None:
            self.parked = ParkedSessions(recovery.window, recovery.max_parked)
            store.on_resume = self._resume_here
            self.rooms.on_membership_change = self._membership_changed
        self._pipeline = EventPipeline(
            registry=self.registry,
            middlewares=self._middlewares,
            hooks=self.hooks,
            auth=self.auth,
            max_payload_size=self.max_payload_size,
            debug=self.debug,
            users=self.users,
        )

    def token_signer(self) -> TokenSigner | None:
        """The signer of this process's recovery tokens (None: recovery disabled), made at
        first use: the secret is read then, not when the app is imported."""
        recovery = self.recovery
        if recovery is None:
            return None
        if self._signer is None:
            self.set_recovery_secret(resolve_secret(recovery.secret, os.environ))
        return self._signer

    def set_recovery_secret(self, secret: str | bytes) -> None:
        """Sign and verify tokens with ``secret`` from now on (a cluster with Redis gives
        every node the one they agreed on at shard start)."""
        recovery = self.recovery
        if recovery is None:
            return
        node = self.recovery_node if self.recovery_node is not None else current_node()
        self._signer = TokenSigner(
            secret.encode() if isinstance(secret, str) else secret,
            window=recovery.window,
            max_bytes=recovery.max_token_bytes,
            node=node,
        )

    def event_definitions(self) -> list[EventDefinition]:
        return list(self.registry)

    # -- the transport-facing entry points -----------------------------------------------------

    def check_origin(self, headers: Mapping[str, str]) -> str | None:
        """None when the handshake's Origin is admitted, else the one-line reason it is not."""
        return self.origin_policy.check({k.lower(): v for k, v in headers.items()})

    def serves_namespace(self, namespace: Namespace) -> bool:
        return self.registry.has_namespace(normalize_namespace(namespace))

    async def handle_connect(
        self,
        raw_socket: RawSocket,
        headers: Mapping[str, str],
        query_params: Mapping[str, str],
        *,
        namespace: Namespace | None = None,
    ) -> Connection:
        """Admit a new connection whose transport is ``raw_socket`` (a ``Transport``);
        ``accept`` with the reference's return value (the errors are ``accept``'s)."""
        handle = await self.accept(raw_socket, headers, query_params, namespace=namespace)
        return handle.conn

    async def accept(
        self,
        raw_socket: RawSocket,
        headers: Mapping[str, str],
        query_params: Mapping[str, str],
        *,
        namespace: Namespace | None = None,
    ) -> ConnectionHandle:
        """Admit a new connection whose transport is ``raw_socket`` (a ``Transport``); the
        handle is what the transport keeps to drive it (offer messages, close, report the end).

        Raises:
            UnknownNamespaceError: nothing is registered in ``namespace``.
            OriginNotAllowedError: the Origin header is not admitted.
            ConnectionAuthError: authentication failed; ``AUTH_ERROR`` was sent and
                the transport closed with 4001.
        """
        self.startup()
        transport: Transport = raw_socket
        headers = {k.lower(): v for k, v in headers.items()}
        query = dict(query_params)
        recover_token = query.pop(RECOVER_PARAM, None)
        since_param = query.pop(SINCE_PARAM, None)
        ns = normalize_namespace(namespace) if namespace is not None else self.namespace
        if not self.registry.has_namespace(ns):
            raise UnknownNamespaceError(f"namespace {ns!r} is not served")
        refusal = self.origin_policy.check(headers)
        if refusal is not None:
            raise OriginNotAllowedError(refusal)
        signer = self.token_signer()
        asked: SessionState | Refusal | None = None
        if recover_token is not None and signer is not None:
            asked = signer.verify(recover_token, namespace=ns)
        now = utcnow()
        max_duration = self.session.max_duration
        conn = Connection(
            id=self.rooms.store.new_connection_id(),
            raw_socket=raw_socket,
            identity=Identity(),
            session=SessionInfo(
                started_at=now,
                expires_at=now + timedelta(seconds=max_duration) if max_duration else None,
            ),
            connected_at=now,
            last_active=now,
            headers=headers,
            query_params=query,
            namespace=ns,
        )
        bucket = TokenBucket(self.rate_limit) if self.rate_limit is not None else None

        def close(code: int, reason: str) -> Awaitable[None]:
            return self.close_connection(conn, code, reason)

        rt = ConnectionRuntime(conn, transport, self.session, bucket, close)
        if self.auth is not None:
            # Authentication sees the query as sent (the recovery parameters included).
            identity = await self._authenticate(rt, headers, dict(query_params))
            conn.identity = identity
            conn.session.token_expires_at = identity.token_expires_at
            if isinstance(asked, SessionState) and asked.identity.user_id != identity.user_id:
                asked = Refusal(ErrorCode.RECOVERY_FOREIGN, "recovery token of another user")
        elif isinstance(asked, SessionState):
            # Without authentication, who the session was is what its token says.
            conn.identity = _identity_of(asked.identity)
        state = asked if isinstance(asked, SessionState) else None
        recovery = self.recovery
        if recovery is not None:
            rt.acks = AckCache(recovery.max_acks)
        if state is not None:
            await self._take_over(rt, state)
        conn._emit_fn = rt.emit
        conn._disconnect_fn = lambda reason: self.close_connection(conn, CloseCode.NORMAL, reason)
        self._runtimes[conn.id] = rt
        await self.rooms.store.attach(rt)
        try:
            await self.users.attach(conn)
        except EventError:  # the user's home shard is down: served, but not by user id
            logger.warning("conn %s: not addressable by user id (rooms unavailable)", conn.id)
        greeting: dict[str, Any] = {
            "conn_id": conn.id,
            "namespace": ns,
            "user_id": conn.identity.user_id,
            "heartbeat_interval": self.session.heartbeat_interval,
            "heartbeat_timeout": self.session.heartbeat_timeout,
            **self.server_info,
        }
        rejoined: list[RoomName] = []
        if state is not None:
            missed, rejoined = await self._recover_rooms(conn, state, since_param)
            conn.recovered = not missed
            metrics.recoveries.labels(outcome="gap" if missed else "recovered").inc()
            greeting["recovered"] = conn.recovered
            if missed:
                greeting["missed"] = missed
        elif recovery is not None:
            greeting["recovered"] = False
        if isinstance(asked, Refusal):
            metrics.recoveries.labels(outcome=_REFUSAL_OUTCOMES[asked.code]).inc()
        if signer is not None:
            greeting["recovery"] = {"token": self._token_for(rt), "window": signer.window}
        rt.machine.move(ConnState.OPEN)
        # The greeting goes first, before the replay held back since the session was taken.
        transport.write(envelope.encode(SystemEvent.CONNECT, greeting))
        if isinstance(asked, Refusal):
            rt.send_error(asked.code, asked.message, event=SystemEvent.CONNECT)
        if signer is not None:
            rt.on_ping = lambda: self._refresh_token(rt)
        if state is not None:
            rt.start_release()  # the replay, as fast as the client reads it, then live
        rt.start_session()
        for room in rejoined:
            await self.hooks.run("on_room_join", conn, room)
        await self.hooks.run("on_connect", conn)
        pipeline = self._pipeline
        assert pipeline is not None  # built by startup()
        return ConnectionHandle(
            rt, pipeline, close, lambda reason: self.handle_disconnect(conn, reason)
        )

    async def _authenticate(
        self, rt: ConnectionRuntime, headers: dict[str, str], query: dict[str, str]
    ) -> Identity:
        """The app's auth backend on the handshake; a refusal is explained (``AUTH_ERROR``,
        close 4001) and raised as ``ConnectionAuthError``."""
        assert self.auth is not None
        try:
            result = self.auth.authenticate(headers, query)
            identity = await result if inspect.isawaitable(result) else result
            if identity is None:
                # The reference's backends refuse by returning None.
                raise AuthenticationError("authentication failed")
            if not isinstance(identity, Identity):
                raise TypeError(f"authenticate() returned {type(identity).__name__}, not Identity")
        except AuthenticationError as exc:
            await self._refuse(rt, exc.message or "authentication failed")
            raise ConnectionAuthError(exc.message or "authentication failed") from exc
        except Exception as exc:
            logger.exception("auth backend failed during connect")
            await self._refuse(rt, "authentication failed")
            raise ConnectionAuthError("authentication failed") from exc
        return identity

    async def _take_over(self, rt: ConnectionRuntime, state: SessionState) -> None:
        """A token was honoured: the session's old connection is closed wherever it still
        runs and its ack replies handed here; this connection takes its id and metadata,
        and holds what it is delivered until its greeting is written."""
        parked = await self.rooms.store.resume(state.conn_id)
        max_acks = self.recovery.max_acks if self.recovery is not None else 0
        rt.inherited_acks = AckCache(max_acks, parked or ())
        conn = rt.conn
        conn.id = state.conn_id
        conn.metadata = dict(state.metadata)
        rt.hold()

    async def _recover_rooms(
        self, conn: Connection, state: SessionState, since_param: str | None
    ) -> tuple[dict[RoomName, str | None], list[RoomName]]:
        """Rejoin the token's rooms, each replayed from the client's position (else the
        token's): the rooms whose history no longer covers the gap, with the position the
        client gave, and the rooms rejoined."""
        since = _parse_since(since_param)
        recovery = self.recovery
        skip_guards = recovery is None or recovery.skip_guards
        store = self.rooms.store
        missed: dict[RoomName, str | None] = {}
        rejoined: list[RoomName] = []
        replayed = 0
        for room, joined_at in state.rooms.items():
            if not skip_guards:
                try:
                    await self.rooms.check_guards(conn, room)
                except RoomPermissionError:
                    logger.info("conn %s: recovered without room %r (guard)", conn.id, room)
                    continue
            given = since.get(room, joined_at)
            position = _position(given)
            replay = await store.recover(room, conn.id, position)
            conn.rooms.add(room)
            rejoined.append(room)
            if replay is None:
                continue
            if replay.coverage is Coverage.COVERED:
                replayed += len(replay.frames_for(conn.id))
                # The position a client that reads nothing more would recover from again.
                conn.positions[room] = str(position or replay.position)
            else:
                missed[room] = given
                conn.positions[room] = str(replay.position)
        if replayed:
            metrics.recovery_replayed_messages.inc(replayed)
        return missed, rejoined

    def _token_for(self, rt: ConnectionRuntime) -> str | None:
        """A fresh recovery token for ``rt``'s connection (None: too large, or disabled)."""
        signer = self.token_signer()
        if signer is None:
            return None
        conn = rt.conn
        identity = conn.identity
        rt.token_sent_at = time.monotonic()
        return signer.sign(
            conn.id,
            conn.namespace,
            TokenIdentity(
                identity.user_id,
                identity.role,
                tuple(identity.scopes),
                identity.is_authenticated,
            ),
            conn.metadata,
            {room: conn.positions.get(room) for room in sorted(conn.rooms)},
        )

    def _send_token(self, rt: ConnectionRuntime) -> None:
        rt.deliver(envelope.encode(SystemEvent.RECOVERY, {"token": self._token_for(rt)}))

    def _membership_changed(self, conn: Connection) -> None:
        """A join or leave: the client's token must name its rooms (sent before the ack)."""
        rt = self._runtime_of(conn)
        if rt is not None and rt.machine.state in (ConnState.OPEN, ConnState.DRAINING):
            self._send_token(rt)

    def _refresh_token(self, rt: ConnectionRuntime) -> None:
        """At a heartbeat: a token older than a quarter of the window is replaced, so that
        a long-lived connection always holds one that is valid for most of the window."""
        signer = self.token_signer()
        if signer is not None and time.monotonic() - rt.token_sent_at >= signer.window / 4:
            self._send_token(rt)

    async def _resume_here(self, conn_id: ConnectionId) -> ParkedAcks:
        """The room store's ``on_resume``: the session ``conn_id`` ran in this process. Its
        connection, if still open (a drop the server has not noticed), stops taking events,
        its running handlers get ``RESUME_HANDLER_WAIT`` seconds, and it is closed; its
        kept replies are handed over and forgotten here."""
        finishing = self._finishing.get(conn_id)
        if finishing is not None:  # closed with handlers running: their replies first
            await asyncio.wait({finishing}, timeout=RESUME_HANDLER_WAIT)
        rt = self._runtimes.get(conn_id)
        if rt is not None:
            rt.stop_release()  # a replay to a client that is gone would only be waited for
            if rt.machine.can_move(ConnState.DRAINING):
                rt.machine.move(ConnState.DRAINING)
            try:
                await asyncio.wait_for(rt.wait_idle(), RESUME_HANDLER_WAIT)
            except TimeoutError:
                logger.warning("conn %s: handlers still running when its session resumed", conn_id)
            await self.close_connection(rt.conn, CloseCode.NORMAL, "resumed")
        parked = self.parked
        return None if parked is None else parked.take(conn_id)

    async def _refuse(self, rt: ConnectionRuntime, message: str) -> None:
        """Authentication failed: browsers cannot read a refused handshake, so accept,
        explain with ``AUTH_ERROR`` and close with 4001."""
        rt.transport.write(
            envelope.encode_error(
                ErrorCode.AUTH_ERROR, message, event=None, request_id=uuid.uuid4().hex
            )
        )
        rt.machine.move(ConnState.REJECTED)
        await rt.transport.close(CloseCode.AUTH_FAILED, "authentication failed")

    async def handle_event(self, conn: Connection, raw_message: str | bytes) -> None:
        """Feed one inbound message; returns when it is admitted, before its handler finishes."""
        rt = self._runtime_of(conn)
        if rt is None or self._pipeline is None:
            return
        await self._pipeline.handle(rt, raw_message)

    async def drain(self, timeout: float, busy: Awaitable[Any] | None = None) -> None:
        """Server shutdown: no new events, ``__server_shutdown__`` to everyone, running
        handlers (and ``busy``, the server's other work in flight, such as publish API
        requests) get ``timeout`` seconds to finish, then every connection closes with 1001."""
        self._shutting_down = True  # handlers get this drain's timeout, not another wait each
        notice: PayloadDict = {"reason": "shutdown", "graceful_timeout": timeout}
        recovery_on = self.token_signer() is not None
        for rt in list(self._runtimes.values()):
            if recovery_on:  # each connection's own token: it reconnects to a new shard
                notice = {**notice, "recovery": {"token": self._token_for(rt)}}
            rt.deliver(envelope.encode(SystemEvent.SERVER_SHUTDOWN, notice))
        # Messages already on their way when the notice left (a client that connected a moment
        # ago and sent its first event) are still handled; after this, events are refused.
        await asyncio.sleep(min(DRAIN_SETTLE, timeout))
        runtimes = list(self._runtimes.values())
        for rt in runtimes:
            if rt.machine.can_move(ConnState.DRAINING):
                rt.machine.move(ConnState.DRAINING)
        pending: list[Awaitable[Any]] = [rt.wait_idle() for rt in runtimes]
        if busy is not None:
            pending.append(busy)
        if pending:
            waiting = asyncio.gather(*pending)
            try:
                await asyncio.wait_for(waiting, timeout)
            except TimeoutError:
                logger.warning("handlers still running after %ss of drain; closing", timeout)
        for rt in runtimes:
            await self.close_connection(rt.conn, CloseCode.SERVER_SHUTDOWN, "server_shutdown")

    async def handle_disconnect(self, conn: Connection, reason: str = "client_close") -> None:
        """The transport is gone (peer closed, network dropped); clean up once."""
        rt = self._runtime_of(conn)
        if rt is None or not rt.machine.can_move(ConnState.CLOSING):
            return
        rt.machine.move(ConnState.CLOSING)
        await self._finish(rt, reason)

    async def close_connection(self, conn: Connection, code: int, reason: str) -> None:
        """Server-initiated close with ``code``; ``reason`` reaches the on_disconnect hooks."""
        rt = self._runtime_of(conn)
        if rt is None or not rt.machine.can_move(ConnState.CLOSING):
            return
        rt.machine.move(ConnState.CLOSING)
        metrics.connection_closes.labels(code=str(int(code))).inc()
        try:
            await rt.transport.close(code, reason)
        except Exception:
            logger.exception("transport close failed (conn=%s)", conn.id)
        await self._finish(rt, reason)

    async def _finish(self, rt: ConnectionRuntime, reason: str) -> None:
        conn = rt.conn
        rt.stop_session()
        rt.stop_release()  # a replay has nobody to go to now: not a handler to wait for
        parked = self.parked
        running = set(rt.tasks) - {eager.current_task()}
        if parked is not None and running and not self._shutting_down:
            # The client may come back and resend what these handlers are running: cut
            # between what they did (a broadcast) and their reply, the resend would run it
            # again. They run on (up to RESUME_HANDLER_WAIT) and their replies are parked.
            self._finishing[conn.id] = asyncio.ensure_future(
                self._park_when_done(rt, running, parked)
            )
        else:
            rt.cancel_tasks()
        if parked is not None:
            parked.park(conn.id, rt.ack_replies())
        try:
            await self.rooms.leave_all(conn)
            await self.hooks.run("on_disconnect", conn, reason)
        finally:
            if self._runtimes.get(conn.id) is rt:
                del self._runtimes[conn.id]
            rt.machine.move(ConnState.CLOSED)

    async def _park_when_done(
        self, rt: ConnectionRuntime, running: set[asyncio.Task[Any]], parked: ParkedSessions
    ) -> None:
        conn_id = rt.conn.id
        try:
            _, late = await asyncio.wait(running, timeout=RESUME_HANDLER_WAIT)
            for task in late:
                task.cancel()
            if late:
                logger.warning(
                    "conn %s: handlers still running after its close; cancelled", conn_id
                )
            parked.park(conn_id, rt.ack_replies())  # now with the late replies too
            if rt.conn.rooms:  # a join that finished after the close: not a member after all
                await self.rooms.leave_all(rt.conn)
        finally:
            if self._finishing.get(conn_id) is eager.current_task():
                del self._finishing[conn_id]

    def _runtime_of(self, conn: Connection) -> ConnectionRuntime | None:
        """``conn``'s runtime; None once it ended (a recovered session's new connection
        has the same id: the old one's transport must not reach it)."""
        rt = self._runtimes.get(conn.id)
        return rt if rt is not None and rt.conn is conn else None

    # -- introspection -------------------------------------------------------------------------

    def runtime(self, conn_id: ConnectionId) -> ConnectionRuntime | None:
        return self._runtimes.get(conn_id)

    @property
    def connections(self) -> list[Connection]:
        """Connections served by this process."""
        return [rt.conn for rt in self._runtimes.values()]


def _identity_of(token: TokenIdentity) -> Identity:
    return Identity(
        user_id=token.user_id,
        role=token.role,
        scopes=list(token.scopes),
        authenticated=token.authenticated,
    )


def _parse_since(raw: str | None) -> dict[RoomName, str | None]:
    """``?since=`` (a JSON object of room -> position); anything unreadable is ignored (the
    token's positions are used)."""
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {room: pos for room, pos in value.items() if isinstance(pos, str)}


def _position(text: str | None) -> Position | None:
    if text is None:
        return None
    try:
        return Position.parse(text)
    except ValueError:
        return None
