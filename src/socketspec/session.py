"""Session policy: ``SessionConfig`` and the per-connection session clock.

Owns the rules of a session's life: heartbeat pings and the pong deadline,
the idle timeout, the maximum duration, the token-expiry warning and the
token expiry itself. ``SessionClock`` is sans-I/O: it is told the time and
what happened, and answers with the actions that are due and when to look
again. The connection runtime drives it with one timer and performs the
actions (sending, closing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class SessionConfig:
    """Heartbeat and lifetime settings, in seconds; 0 disables a limit.

    Heartbeat replies (``__pong__``) keep a connection alive but do not count
    as activity for ``idle_timeout``: an open tab that answers pings and sends
    nothing else is idle.
    """

    max_duration: float = 7200
    idle_timeout: float = 300
    heartbeat_interval: float = 25
    heartbeat_timeout: float = 10
    token_refresh_window: float = 60

    def __post_init__(self) -> None:
        for name in (
            "max_duration",
            "idle_timeout",
            "heartbeat_interval",
            "heartbeat_timeout",
            "token_refresh_window",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"SessionConfig.{name} must not be negative")


class SessionAction(Enum):
    PING = "ping"
    WARN_AUTH_EXPIRING = "warn_auth_expiring"
    CLOSE_IDLE = "close_idle"
    CLOSE_SESSION_EXPIRED = "close_session_expired"
    CLOSE_HEARTBEAT_TIMEOUT = "close_heartbeat_timeout"
    CLOSE_AUTH_EXPIRED = "close_auth_expired"


class SessionClock:
    """The timers of one session, on a monotonic clock given by the caller."""

    __slots__ = (
        "_auth_warned",
        "_config",
        "_last_activity",
        "_next_ping",
        "_ping_sent",
        "_pong_deadline",
        "_started",
        "_token_expiry",
        "finished",
    )

    def __init__(self, config: SessionConfig, now: float, token_expires_in: float | None) -> None:
        self._config = config
        self._started = now
        self._last_activity = now
        self._next_ping = now + config.heartbeat_interval if config.heartbeat_interval else None
        self._ping_sent: float | None = None
        self._pong_deadline: float | None = None
        self._token_expiry: float | None = None
        self._auth_warned = False
        self.finished = False
        self.set_token_expiry(now, token_expires_in)

    def set_token_expiry(self, now: float, expires_in: float | None) -> None:
        """A new token was accepted: its expiry replaces the old one, to be warned about again."""
        self._token_expiry = None if expires_in is None else now + expires_in
        self._auth_warned = False

    def on_activity(self, now: float) -> None:
        self._last_activity = now

    def on_pong(self, now: float) -> float | None:
        """Record a pong; returns the heartbeat round trip when one was outstanding."""
        if self._ping_sent is None:
            return None
        rtt = now - self._ping_sent
        self._ping_sent = None
        self._pong_deadline = None
        return rtt

    def next_deadline(self) -> float | None:
        if self.finished:
            return None
        c = self._config
        candidates = [
            self._started + c.max_duration if c.max_duration else None,
            self._last_activity + c.idle_timeout if c.idle_timeout else None,
            self._pong_deadline,
            self._next_ping if self._pong_deadline is None else None,
            self._token_expiry,
            self._token_expiry - c.token_refresh_window
            if self._token_expiry is not None and not self._auth_warned
            else None,
        ]
        present = [t for t in candidates if t is not None]
        return min(present) if present else None

    def due(self, now: float) -> list[SessionAction]:
        """The actions due at ``now``; a closing action ends the session and comes alone."""
        if self.finished:
            return []
        c = self._config
        closing: SessionAction | None = None
        if c.max_duration and now >= self._started + c.max_duration:
            closing = SessionAction.CLOSE_SESSION_EXPIRED
        elif self._token_expiry is not None and now >= self._token_expiry:
            closing = SessionAction.CLOSE_AUTH_EXPIRED
        elif self._pong_deadline is not None and now >= self._pong_deadline:
            closing = SessionAction.CLOSE_HEARTBEAT_TIMEOUT
        elif c.idle_timeout and now >= self._last_activity + c.idle_timeout:
            closing = SessionAction.CLOSE_IDLE
        if closing is not None:
            self.finished = True
            return [closing]
        actions: list[SessionAction] = []
        if (
            self._token_expiry is not None
            and not self._auth_warned
            and now >= self._token_expiry - c.token_refresh_window
        ):
            self._auth_warned = True
            actions.append(SessionAction.WARN_AUTH_EXPIRING)
        if self._next_ping is not None and self._pong_deadline is None and now >= self._next_ping:
            self._ping_sent = now
            self._pong_deadline = now + c.heartbeat_timeout if c.heartbeat_timeout else None
            self._next_ping = now + c.heartbeat_interval
            actions.append(SessionAction.PING)
        return actions
