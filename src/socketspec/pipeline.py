"""The inbound event pipeline.

Owns what happens to one client message, in this order: size check, JSON
parse, rate limit, session touch (``__pong__`` is consumed there, and
``__refresh_auth__`` handled), admission (bounded in-flight handlers, in
arrival order per event for ``ordered=True``), middleware chain, handler
lookup, payload validation, dependencies, handler, ack. Every failure becomes
an ``__error__`` envelope and the connection stays open. A message resent after a
recovery with an ack id the taken-over session answered gets that stored answer
again instead of running (the handlers' answers are kept as they are sent). Does not own the
connection's lifecycle (``socketspec.app``) or its timers (``socketspec.runtime``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from contextlib import AsyncExitStack
from contextvars import ContextVar
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from socketspec import envelope, metrics
from socketspec.di import SolveContext, solve_params
from socketspec.errors import (
    RESERVED_EVENTS,
    AuthenticationError,
    ErrorCode,
    EventError,
    SystemEvent,
    UnknownEventError,
    ValidationFailed,
)
from socketspec.metrics import TALLY
from socketspec.middleware import Middleware, NextHandler, compile_chain
from socketspec.registry import EventDefinition, EventRegistry
from socketspec.runtime import ConnectionRuntime, new_request_id

if TYPE_CHECKING:
    from socketspec.connection import Connection
    from socketspec.hooks import Hooks
    from socketspec.security.auth import AuthBackend
    from socketspec.types import AckId, EventName, PayloadDict
    from socketspec.users import UserManager

logger = logging.getLogger("socketspec.pipeline")

PONG = SystemEvent.PONG
REFRESH_AUTH = SystemEvent.REFRESH_AUTH
HANDLER_ERROR_MESSAGE = "internal error while handling the event"
# The handler's return value, per message task; read when the middleware chain returns None.
_HANDLER_RESULT: ContextVar[Any] = ContextVar("socketspec_handler_result", default=None)


class _EventMetrics:
    """Label children bound once per event name (registered names only)."""

    __slots__ = ("duration", "error", "ok", "received")

    def __init__(self, name: str) -> None:
        self.received = metrics.events_received.labels(event=name)
        self.ok = metrics.events_handled.labels(event=name, outcome="ok")
        self.error = metrics.events_handled.labels(event=name, outcome="error")
        self.duration = metrics.handler_duration.labels(event=name)


class EventPipeline:
    def __init__(
        self,
        *,
        registry: EventRegistry,
        middlewares: list[Middleware],
        hooks: Hooks,
        auth: AuthBackend | None,
        max_payload_size: int,
        debug: bool,
        users: UserManager | None = None,
    ) -> None:
        self.users = users  # a refreshed identity with another user id moves its address
        self.registry = registry
        self.hooks = hooks
        self.auth = auth
        self.max_payload_size = max_payload_size
        self.debug = debug
        # None without middleware: the handler is called straight from ``_run``, with the
        # definition ``_admit`` looked up (the chain's end looks it up again, by the event
        # name a middleware passes on).
        self.chain: NextHandler | None = (
            compile_chain(list(middlewares), self._dispatch) if middlewares else None
        )
        self._metrics = {d.name: _EventMetrics(d.name) for d in registry}
        self._unknown_metrics = _EventMetrics(metrics.UNKNOWN_EVENT_LABEL)

    # -- the synchronous front: runs inline, in arrival order -----------------------------------

    async def handle(self, rt: ConnectionRuntime, raw: str | bytes) -> None:
        """Take one message, waiting for a handler slot; returns once it is admitted (or
        refused), not when it is handled."""
        while not self.admit(rt, raw):
            slot: asyncio.Future[None] = rt.loop.create_future()
            rt.when_slot_free(functools.partial(_wake, slot))
            await slot

    def admit(self, rt: ConnectionRuntime, raw: str | bytes) -> bool:
        """Take one message now: False (and nothing done) while every handler slot of the
        connection is in use; the caller offers it again after ``rt.when_slot_free``."""
        if not rt.machine.accepts_events:
            return True  # dropped: the connection is closing
        if not rt.slot_free():
            return False
        self._admit(rt, raw)
        return True

    def _admit(self, rt: ConnectionRuntime, raw: str | bytes) -> None:
        """A slot is free: the checks, then the handler's task, which takes the slot (nothing
        in between can: this runs without yielding) and releases it when done."""
        if envelope.exceeds(raw, self.max_payload_size):
            self.refuse_oversize(rt)
            return
        message = envelope.decode(raw)
        if isinstance(message, envelope.DecodeFailure):
            rt.send_error(
                message.code,
                message.message,
                event=message.event,
                details=message.details,
                ack=message.ack,
            )
            return
        event = message.event
        # Heartbeat replies are exempt: refusing them would turn a rate limit into a 4005 close.
        if rt.bucket is not None and event != PONG and not rt.bucket.consume():
            rt.send_error(
                ErrorCode.RATE_LIMIT_ERROR,
                "rate limit exceeded",
                event=event,
                details={"retry_after": round(rt.bucket.retry_after(), 3)},
                ack=message.ack,
            )
            return
        rt.touch(is_pong=event == PONG)
        if event == PONG:
            return
        if event == REFRESH_AUTH:
            rt.spawn(self._refresh_auth(rt, message.payload, message.ack))
            return
        if message.ack is not None and rt.inherited_acks is not None:
            stored = rt.stored_reply(message.ack)
            if stored is not None:
                # Resent after a recovery: it ran in the session this one took over.
                metrics.recovery_ack_replays.inc()
                rt.deliver(stored)
                return
        if event in RESERVED_EVENTS:
            rt.send_error(
                ErrorCode.UNKNOWN_EVENT,
                f"{event!r} is a reserved system event",
                event=event,
                ack=message.ack,
            )
            return
        definition = self.registry.get(rt.conn.namespace, event)
        TALLY.add(
            (self._metrics[event] if definition is not None else self._unknown_metrics).received
        )
        ordered = definition is not None and definition.ordered
        previous = rt.ordered_tails.get(event) if ordered else None
        rt.take_slot()
        task = rt.spawn(self._run(rt, event, message.payload, message.ack, previous, definition))
        if ordered and task is not None:  # a handler that finished at once leaves no tail
            rt.ordered_tails[event] = task
            task.add_done_callback(lambda t: _clear_tail(rt, event, t))

    def refuse_oversize(self, rt: ConnectionRuntime) -> None:
        rt.send_error(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"message exceeds the {self.max_payload_size}-byte limit",
            details={"max_payload_size": self.max_payload_size},
        )

    # -- the rest runs in its own task ----------------------------------------------------------

    async def _run(
        self,
        rt: ConnectionRuntime,
        event: EventName,
        payload: PayloadDict,
        ack: AckId | None,
        previous: asyncio.Task[Any] | None,
        definition: EventDefinition | None,
    ) -> None:
        conn = rt.conn
        try:
            if previous is not None and not previous.done():
                # ordered=True: wait for this connection's previous message of the same event
                await asyncio.wait([previous])
            chain = self.chain
            if chain is None:
                result = await self._handle(conn, event, payload, definition)
            else:
                _HANDLER_RESULT.set(None)
                result = await chain(conn, event, payload)
                if result is None:
                    # A middleware that awaits next_handler without returning its value
                    # must not swallow the handler's ack.
                    result = _HANDLER_RESULT.get()
            if ack is not None and result is not None:
                rt.reply(ack, envelope.encode_ack(ack, result))
        except asyncio.CancelledError:
            raise
        except (UnknownEventError, ValidationFailed) as exc:
            rt.send_error(
                exc.code, exc.message, event=event, details=exc.details, ack=ack, keep=True
            )
        except EventError as exc:
            rt.send_error(
                exc.code, exc.message, event=event, details=exc.details, ack=ack, keep=True
            )
            await self.hooks.run("on_error", conn, exc)
        except Exception as exc:
            request_id = new_request_id()
            logger.error(
                "handler for event %r raised (conn=%s request_id=%s)",
                event,
                conn.id,
                request_id,
                exc_info=exc,
                extra={"conn_id": conn.id, "request_id": request_id, "event": event},
            )
            message = f"{type(exc).__name__}: {exc}" if self.debug else HANDLER_ERROR_MESSAGE
            details = {"exception": type(exc).__name__} if self.debug else None
            rt.send_error(
                ErrorCode.HANDLER_ERROR,
                message,
                event=event,
                details=details,
                ack=ack,
                request_id=request_id,
                keep=True,
            )
            await self.hooks.run("on_error", conn, exc)
        finally:
            rt.release_slot()

    async def _dispatch(self, conn: Connection, event: EventName, payload: PayloadDict) -> Any:
        """The end of the middleware chain: lookup, then ``_handle``."""
        result = await self._handle(conn, event, payload, self.registry.get(conn.namespace, event))
        _HANDLER_RESULT.set(result)
        return result

    async def _handle(
        self,
        conn: Connection,
        event: EventName,
        payload: PayloadDict,
        definition: EventDefinition | None,
    ) -> Any:
        """Validation, dependencies, handler, and its metrics."""
        if definition is None:
            raise UnknownEventError(f"no handler for event {event!r}", details={"event": event})
        try:
            value = definition.parse_payload(payload)
        except ValidationError as exc:
            raise ValidationFailed(
                "Invalid message format",
                details={
                    "errors": exc.errors(
                        include_url=False, include_context=False, include_input=False
                    )
                },
            ) from exc
        event_metrics = self._metrics[definition.name]
        started = time.perf_counter()
        try:
            result = await self._call(definition, conn, event, value)
        except BaseException:
            TALLY.add(event_metrics.error)
            raise
        finally:
            TALLY.observe(event_metrics.duration, time.perf_counter() - started)
        TALLY.add(event_metrics.ok)
        return result

    @staticmethod
    async def _call(
        definition: EventDefinition, conn: Connection, event: EventName, value: Any
    ) -> Any:
        args: tuple[Any, ...]
        if definition.payload_param is not None:
            args = (conn, value)
        elif definition.passes_connection:
            args = (conn,)
        else:
            args = ()
        params = definition.dependant.params
        if not params:  # the common case: no exit stack, no solver
            result = definition.handler(*args)
            if type(result) is CoroutineType:  # an ``async def`` handler: no protocol check
                return await result
            return await result if inspect.isawaitable(result) else result
        async with AsyncExitStack() as stack:
            kwargs = await solve_params(params, SolveContext(conn, event, value, stack))
            result = definition.handler(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

    async def _refresh_auth(
        self, rt: ConnectionRuntime, payload: PayloadDict, ack: AckId | None
    ) -> None:
        """``__refresh_auth__ {"token"}``: re-authenticate; the identity and expiry follow."""
        token = payload.get("token")
        if self.auth is None:
            rt.send_error(
                ErrorCode.AUTH_ERROR,
                "this server has no authentication",
                event=REFRESH_AUTH,
                ack=ack,
            )
            return
        if not isinstance(token, str) or not token:
            rt.send_error(
                ErrorCode.VALIDATION_ERROR,
                "__refresh_auth__ needs a 'token' string",
                event=REFRESH_AUTH,
                ack=ack,
            )
            return
        try:
            identity = await authenticate_token(self.auth, token)
        except AuthenticationError as exc:
            rt.send_error(ErrorCode.AUTH_ERROR, exc.message, event=REFRESH_AUTH, ack=ack)
            return
        except Exception:
            logger.exception("auth backend failed during __refresh_auth__ (conn=%s)", rt.id)
            rt.send_error(
                ErrorCode.AUTH_ERROR, "authentication failed", event=REFRESH_AUTH, ack=ack
            )
            return
        conn = rt.conn
        previous_user = conn.identity.user_id
        conn.identity = identity
        conn.session.token_expires_at = identity.token_expires_at
        rt.token_refreshed()
        if self.users is not None and identity.user_id != previous_user:
            await self.users.reidentify(conn, previous_user)
        if ack is not None:
            expires = identity.token_expires_at
            rt.deliver(
                envelope.encode_ack(
                    ack,
                    {
                        "user_id": identity.user_id,
                        "expires_at": expires.isoformat() if expires else None,
                    },
                )
            )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _clear_tail(rt: ConnectionRuntime, event: EventName, task: asyncio.Task[Any]) -> None:
    if rt.ordered_tails.get(event) is task:
        del rt.ordered_tails[event]


async def authenticate_token(auth: AuthBackend, token: str) -> Any:
    """Authenticate a bare token with any backend: its own ``authenticate_token`` when it has
    one, otherwise ``authenticate`` with the token presented as a browser would."""
    direct = getattr(auth, "authenticate_token", None)
    if direct is not None:
        result = direct(token)
    else:
        result = auth.authenticate({"authorization": f"Bearer {token}"}, {"token": token})
    identity = await result if inspect.isawaitable(result) else result
    if identity is None:
        # A backend in the reference's style refuses by returning None.
        raise AuthenticationError("invalid token")
    return identity
