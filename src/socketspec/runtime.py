"""The connection runtime: the application half of a connection actor.

Owns everything about one live connection that is not protocol bytes: its
state machine, its session clock and the one deadline of it filed in the loop's
timer wheel (``socketspec.timers``: no task and no timer handle per connection), its
rate-limit bucket, its in-flight handler tasks (bounded: the count of slots
and the callbacks waiting for one; per-event ordering for ``ordered=True``
handlers), the outbound side of ``emit``, the replies to its acked messages
(``AckCache``, when recovery is on) and the held outbound of a recovering
connection (what is delivered while its replay is assembled waits, in order,
and is then written with backpressure: a replay is never dropped). The transport underneath (the
shard's WebSocket protocol, the TestClient's queue) only moves bytes: it
implements ``Transport``. It closes the connection through the close callable
it is given, not through the application, which it does not know.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import Counter
from pydantic import BaseModel

from socketspec import eager, envelope, metrics, timers
from socketspec.connection import Connection
from socketspec.errors import CloseCode, ErrorCode, SystemEvent
from socketspec.metrics import TALLY
from socketspec.recovery import AckCache
from socketspec.security.ratelimit import TokenBucket
from socketspec.session import SessionAction, SessionClock, SessionConfig
from socketspec.state import ConnectionStateMachine, ConnState
from socketspec.types import AckId, ConnectionId, EventName, PayloadDict

logger = logging.getLogger("socketspec.connection")

# Handlers of one connection that may run at once; past it, admitting the next
# event waits, which pauses reading from that client (backpressure).
MAX_INFLIGHT_EVENTS = 64

_WRITABLE = (ConnState.OPEN, ConnState.DRAINING)
_NO_TASKS: frozenset[asyncio.Task[Any]] = frozenset()
# Error codes are a fixed set (plus an application's own constants): bound once each.
_ERROR_COUNTERS: dict[str, Counter] = {}


class Transport(Protocol):
    """What a connection runtime needs from whatever carries its bytes."""

    def write(self, data: bytes) -> None:
        """Queue one complete outbound message (a UTF-8 JSON envelope). Never blocks."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with ``code``; the transport later reports the end."""
        ...

    def flush_if_quiet(self) -> None:
        """The connection's last running handler ended: a transport that gathers frames
        within a loop turn (the shard's protocol) may send them now, one loop turn sooner,
        unless other connections have frames waiting too. Others do nothing."""
        ...


class BackpressuredTransport(Transport, Protocol):
    """A transport that says how much it holds unsent, so that a recovering connection's
    replay is written as fast as the client reads it (``--max-outbound`` never drops it).
    A transport without these methods gets the replay in one go."""

    max_outbound: int

    def outbound_backlog(self) -> int:
        """Bytes written and not yet handed to the network (what ``max_outbound`` bounds)."""
        ...

    async def wait_writable(self) -> None:
        """Return once the backlog may have shrunk (or the transport is gone)."""
        ...


def new_request_id() -> str:
    return uuid.uuid4().hex


class ConnectionRuntime:
    def __init__(
        self,
        conn: Connection,
        transport: Transport,
        session: SessionConfig,
        bucket: TokenBucket | None,
        close: Callable[[int, str], Awaitable[None]],
    ) -> None:
        # How a session policy closes the connection (the application's close, which
        # cleans up too): a callable, so that the runtime does not hold the application.
        self._close = close
        self.conn = conn
        self.transport = transport
        self.machine = ConnectionStateMachine()
        self.bucket = bucket
        self.session_config = session
        self.clock: SessionClock | None = None
        self.loop = asyncio.get_running_loop()
        self._wheel = timers.wheel_for(self.loop)
        self.inflight = 0  # handler slots in use, at most MAX_INFLIGHT_EVENTS
        self._slot_waiters: list[Callable[[], None]] | None = None
        # The handlers that suspended, running in their tasks; a set once there is one (most
        # handlers finish in their first step and an empty set costs 200 bytes).
        self.tasks: AbstractSet[asyncio.Task[Any]] = _NO_TASKS
        self.ordered_tails: dict[EventName, asyncio.Task[Any]] = {}
        # The slot of the session's next deadline in the loop's timer wheel (no timer
        # handle of its own: ``socketspec.timers``); None while none is filed.
        self._session_slot: int | None = None
        # A transport that queues frames within a loop iteration (the shard's protocol)
        # flushes them when the last handler of a burst ends: the replies leave one loop
        # iteration sooner, yet in one write per burst (it declines under load, where
        # waiting for the end of the turn gathers more per write).
        self._flush = transport.flush_if_quiet
        # Recovery: the replies this connection sent to acked messages, and those of the
        # session it took over (looked up when a message is resent; the own ones are not:
        # a client may reuse an ack id within one session).
        self.acks: AckCache | None = None
        self.inherited_acks: AckCache | None = None
        # Called at each heartbeat ping (the app refreshes the recovery token there).
        self.on_ping: Callable[[], None] | None = None
        self.token_sent_at = 0.0
        # While not None, delivered frames wait here (a recovery's replay, then live ones).
        self._held: deque[bytes] | None = None
        self.replay_task: asyncio.Task[int] | None = None

    @property
    def id(self) -> ConnectionId:
        return self.conn.id

    # -- handler slots -------------------------------------------------------------------------

    def slot_free(self) -> bool:
        """A handler may start; False while all slots are in use (the caller waits)."""
        return self.inflight < MAX_INFLIGHT_EVENTS

    def take_slot(self) -> None:
        self.inflight += 1

    def release_slot(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self._flush()
        waiters = self._slot_waiters
        if waiters is not None:
            self._slot_waiters = None
            for callback in waiters:
                callback()

    def when_slot_free(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, the next time a handler slot is released."""
        if self._slot_waiters is None:
            self._slot_waiters = []
        self._slot_waiters.append(callback)

    # -- outbound ------------------------------------------------------------------------------

    def deliver(self, frame: bytes) -> bool:
        """Queue a serialised envelope; dropped (False) once the connection is closing."""
        held = self._held
        if held is not None:
            if self.machine.state is ConnState.CLOSING or self.machine.state is ConnState.CLOSED:
                return False
            held.append(frame)
            return True
        if self.machine.state not in _WRITABLE:
            return False
        self.transport.write(frame)
        return True

    def reply(self, ack: AckId, frame: bytes) -> None:
        """Deliver the reply to an acked message, kept for a resend after a recovery."""
        if self.acks is not None:
            self.acks.put(ack, frame)
        self.deliver(frame)

    def stored_reply(self, ack: AckId) -> bytes | None:
        inherited = self.inherited_acks
        return None if inherited is None else inherited.get(ack)

    def ack_replies(self) -> list[tuple[AckId, bytes]]:
        """Every kept reply, the inherited ones first (what is parked at the close)."""
        replies: list[tuple[AckId, bytes]] = []
        if self.inherited_acks is not None:
            replies.extend(self.inherited_acks.items())
        if self.acks is not None:
            replies.extend(self.acks.items())
        return replies

    def hold(self) -> None:
        """From now on, delivered frames wait in order until ``release_held``."""
        if self._held is None:
            self._held = deque()

    def start_release(self) -> None:
        """Release the held frames in a task of this connection's (``release_held``)."""
        self.replay_task = self.spawn(self.release_held())

    def stop_release(self) -> None:
        """The connection is being replaced: what it still holds goes nowhere."""
        task = self.replay_task
        if task is not None and not task.done():
            task.cancel()

    async def release_held(self) -> int:
        """Write the held frames in order, waiting for the transport to drain whenever the
        next one would pass its ``max_outbound`` (the replay is never dropped); frames
        delivered meanwhile are written after them. Then delivery is direct again.
        Returns the number of frames written."""
        held = self._held
        if held is None:
            return 0
        transport = self.transport
        backlog = getattr(transport, "outbound_backlog", None)
        wait_writable = getattr(transport, "wait_writable", None)
        limit = getattr(transport, "max_outbound", 0)
        written = 0
        try:
            while held and self.machine.state in _WRITABLE:
                frame = held[0]
                if backlog is not None and wait_writable is not None and limit:
                    pending = backlog()
                    if pending and pending + len(frame) > limit:
                        await wait_writable()
                        continue
                held.popleft()
                transport.write(frame)
                written += 1
        finally:
            self._held = None
        return written

    async def emit(self, event: EventName, payload: PayloadDict | BaseModel) -> None:
        self.deliver(envelope.encode(event, payload))

    def send_error(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        event: EventName | None = None,
        details: PayloadDict | None = None,
        ack: AckId | None = None,
        request_id: str | None = None,
        keep: bool = False,
    ) -> str:
        """Send an ``__error__`` envelope; returns its request id (also in the log line).
        ``keep``: a handler's answer to an acked message, kept for a resend."""
        request_id = request_id or new_request_id()
        code = str(code)
        counter = _ERROR_COUNTERS.get(code)
        if counter is None:
            counter = _ERROR_COUNTERS[code] = metrics.errors.labels(code=code)
        TALLY.add(counter)
        logger.info(
            "error %s conn=%s event=%s request_id=%s: %s",
            code,
            self.id,
            event,
            request_id,
            message,
            extra={"conn_id": self.id, "request_id": request_id, "event": event},
        )
        frame = envelope.encode_error(
            code, message, event=event, request_id=request_id, details=details, ack=ack
        )
        if keep and ack is not None:
            self.reply(ack, frame)
        else:
            self.deliver(frame)
        return request_id

    # -- handler tasks -------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run ``coro`` up to its first suspension now (``socketspec.eager``); the task that
        runs the rest, kept in ``tasks`` until it ends, or None when it is already done."""
        task = eager.start(self.loop, coro)
        if task is not None:
            tasks = self.tasks
            if not isinstance(tasks, set):
                tasks = self.tasks = set()
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return task

    def cancel_tasks(self) -> None:
        current = eager.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()

    async def wait_idle(self) -> None:
        """Wait until no handler of this connection is running (used by tests and drains)."""
        while self.tasks - {eager.current_task()}:
            await asyncio.gather(*(self.tasks - {eager.current_task()}), return_exceptions=True)

    # -- session -------------------------------------------------------------------------------

    def start_session(self) -> None:
        self.clock = SessionClock(self.session_config, self.loop.time(), self._token_expires_in())
        self._schedule_session()

    def stop_session(self) -> None:
        self.clock = None
        if self._session_slot is not None:
            self._wheel.cancel(self._session_slot, self._on_session_timer)
            self._session_slot = None

    def _schedule_session(self) -> None:
        """File the clock's next deadline in the wheel (replacing any filed one)."""
        if self._session_slot is not None:
            self._wheel.cancel(self._session_slot, self._on_session_timer)
            self._session_slot = None
        clock = self.clock
        if clock is None or clock.finished:
            return
        deadline = clock.next_deadline()
        if deadline is not None:
            self._session_slot = self._wheel.schedule(deadline, self._on_session_timer)

    def _on_session_timer(self) -> None:
        self._session_slot = None
        clock = self.clock
        if clock is None:
            return
        for action in clock.due(self.loop.time()):
            self._perform(action)
        self._schedule_session()

    def _token_expires_in(self) -> float | None:
        expires = self.conn.identity.token_expires_at
        if expires is None:
            return None
        return (expires - datetime.now(UTC)).total_seconds()

    def token_refreshed(self) -> None:
        """The identity changed: restart the token timers from its new expiry."""
        if self.clock is not None:
            self.clock.set_token_expiry(self.loop.time(), self._token_expires_in())
            self._schedule_session()

    def touch(self, *, is_pong: bool) -> None:
        self.conn.touch()
        clock = self.clock
        if clock is None:
            return
        now = self.loop.time()
        if is_pong:
            rtt = clock.on_pong(now)
            if rtt is not None:
                TALLY.observe(metrics.heartbeat_rtt, rtt)
                # the pong deadline was the timer's next wake-up; the next ping may be sooner
                self._schedule_session()
        else:
            # Deadlines only move later on activity: the armed timer finds nothing due
            # and re-arms itself, so no timer work per message.
            clock.on_activity(now)

    def _perform(self, action: SessionAction) -> None:
        conn = self.conn
        if action is SessionAction.PING:
            self.deliver(envelope.encode(SystemEvent.PING, {"ts": time.time()}))
            if self.on_ping is not None:
                self.on_ping()
        elif action is SessionAction.WARN_AUTH_EXPIRING:
            expires = conn.identity.token_expires_at
            self.deliver(
                envelope.encode(
                    SystemEvent.AUTH_EXPIRING,
                    {
                        "expires_at": expires.isoformat() if expires else None,
                        "expires_in": self._token_expires_in(),
                    },
                )
            )
        else:
            self.spawn(self._close_for(action))

    async def _close_for(self, action: SessionAction) -> None:
        """A session limit was reached: say so (notice and error, when there are), then close."""
        policy = _SESSION_CLOSES[action]
        config = self.session_config
        if policy.notice is not None:
            setting = policy.setting
            assert setting is not None
            value = getattr(config, setting)
            self.deliver(envelope.encode(policy.notice, {"reason": setting, setting: value}))
        if policy.error is not None:
            self.send_error(policy.error, policy.message.format(config=config))
        await self._close(policy.close_code, policy.reason)


@dataclass(frozen=True, slots=True)
class _SessionClose:
    close_code: CloseCode
    reason: str  # what the on_disconnect hooks receive
    error: ErrorCode | None = None
    message: str = ""
    notice: str | None = None  # system event sent before the error
    setting: str | None = None  # the SessionConfig field the notice reports


_SESSION_CLOSES: dict[SessionAction, _SessionClose] = {
    SessionAction.CLOSE_IDLE: _SessionClose(
        CloseCode.IDLE_TIMEOUT,
        "idle_timeout",
        ErrorCode.IDLE_TIMEOUT,
        "no activity for {config.idle_timeout:g}s",
        SystemEvent.IDLE_WARNING,
        "idle_timeout",
    ),
    SessionAction.CLOSE_SESSION_EXPIRED: _SessionClose(
        CloseCode.SESSION_EXPIRED,
        "session_expired",
        ErrorCode.SESSION_EXPIRED,
        "session reached its maximum of {config.max_duration:g}s",
        SystemEvent.SESSION_EXPIRING,
        "max_duration",
    ),
    SessionAction.CLOSE_AUTH_EXPIRED: _SessionClose(
        CloseCode.TOKEN_EXPIRED, "auth_expired", ErrorCode.AUTH_EXPIRED, "token expired"
    ),
    SessionAction.CLOSE_HEARTBEAT_TIMEOUT: _SessionClose(
        CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout"
    ),
}
