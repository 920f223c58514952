"""Exceptions, error codes, close codes and reserved event names.

Owns every name a client or an operator can see in an error: the ``__error__``
codes, the WebSocket close codes, and the exceptions that map onto them.
Does not own how errors are encoded on the wire (``socketspec.envelope``).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Codes carried in the ``__error__`` envelope's ``payload.code``."""

    AUTH_ERROR = "AUTH_ERROR"
    AUTH_EXPIRED = "AUTH_EXPIRED"
    HANDLER_ERROR = "HANDLER_ERROR"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    PERMISSION_ERROR = "PERMISSION_ERROR"
    RATE_LIMIT_ERROR = "RATE_LIMIT_ERROR"
    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    UNKNOWN_EVENT = "UNKNOWN_EVENT"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    # A recovery token the server cannot honour; the connection goes on as a fresh session.
    RECOVERY_INVALID = "RECOVERY_INVALID"  # forged, malformed or too large
    RECOVERY_EXPIRED = "RECOVERY_EXPIRED"  # older than the recovery window
    RECOVERY_FOREIGN = "RECOVERY_FOREIGN"  # another node's (no shared history), namespace or user


ERROR_CODES: frozenset[str] = frozenset(code.value for code in ErrorCode)


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; only protocol and policy close."""

    NORMAL = 1000
    SERVER_SHUTDOWN = 1001
    PROTOCOL_ERROR = 1002
    INVALID_UTF8 = 1007
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    # In the protocol's table of codes; a shard refuses past its caps before the upgrade
    # (503/429 with Retry-After), so no connection is closed with it today.
    OVER_CAPACITY = 1013
    AUTH_FAILED = 4001
    TOKEN_EXPIRED = 4002
    SESSION_EXPIRED = 4003
    IDLE_TIMEOUT = 4004
    HEARTBEAT_TIMEOUT = 4005
    SLOW_CONSUMER = 4008


class SystemEvent(StrEnum):
    """The reserved event names: the protocol's own messages, never routed to a handler.

    The one table of them: the server sends and reads these members, the AsyncAPI
    builder and the docs page list them, and registering a handler for one raises
    ``ReservedEventNameError``. A member is its wire string (``SystemEvent.ACK ==
    "__ack__"``), so it goes into envelopes and comparisons as it is.
    """

    CONNECT = "__connect__"
    DISCONNECT = "__disconnect__"
    ERROR = "__error__"
    PING = "__ping__"
    PONG = "__pong__"
    AUTH_EXPIRING = "__auth_expiring__"
    SESSION_EXPIRING = "__session_expiring__"
    IDLE_WARNING = "__idle_warning__"
    SERVER_SHUTDOWN = "__server_shutdown__"
    REFRESH_AUTH = "__refresh_auth__"
    ACK = "__ack__"
    # Server -> client: a fresh recovery token (after a join or leave, and before the last
    # one grows old), docs/recovery.md.
    RECOVERY = "__recovery__"


# The system events a client sends; the server sends every other one.
CLIENT_SYSTEM_EVENTS: tuple[SystemEvent, ...] = (SystemEvent.PONG, SystemEvent.REFRESH_AUTH)

RESERVED_EVENTS: frozenset[str] = frozenset(event.value for event in SystemEvent)


class SocketSpecError(Exception):
    """Base class of every error socketspec raises."""


class ConfigurationError(SocketSpecError):
    """The application is wired wrongly; raised at registration or startup."""


class DuplicateEventError(ConfigurationError):
    """Two handlers claim the same event name in one namespace."""


class ReservedEventNameError(ConfigurationError):
    """A handler was registered for a reserved system event name."""


class EventError(SocketSpecError):
    """An error that is sent to the client as an ``__error__`` envelope.

    Handlers may raise it (or a subclass) on purpose; its message and details
    are sent as they are, unlike an unexpected exception, whose text is hidden
    behind ``HANDLER_ERROR``.
    """

    # One of ErrorCode, or an application's own code (a constant: it becomes a metric label).
    code: ErrorCode | str = ErrorCode.HANDLER_ERROR

    def __init__(
        self,
        message: str = "",
        *,
        details: dict[str, Any] | None = None,
        code: ErrorCode | str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        if code is not None:
            self.code = code


class AuthenticationError(EventError):
    """Credentials are missing or invalid."""

    code = ErrorCode.AUTH_ERROR


class TokenExpiredError(AuthenticationError):
    """The presented token has expired."""

    code = ErrorCode.AUTH_EXPIRED


class RoomPermissionError(EventError):
    """A room guard refused a join, or a room refused it for its own rules."""

    code = ErrorCode.PERMISSION_ERROR


class RoomFullError(RoomPermissionError):
    """A room's ``max_members`` is reached."""


class RoomNotFoundError(EventError):
    """A strict broadcast named a room that does not exist."""

    code = ErrorCode.ROOM_NOT_FOUND


class RateLimitError(EventError):
    """For a handler that enforces a limit of its own: the client gets ``RATE_LIMIT_ERROR``.

    The server's own per-connection limit answers with the same code without raising it.
    """

    code = ErrorCode.RATE_LIMIT_ERROR


class ValidationFailed(EventError):
    code = ErrorCode.VALIDATION_ERROR


class UnknownEventError(EventError):
    code = ErrorCode.UNKNOWN_EVENT


class PayloadTooLargeError(EventError):
    """For a handler that bounds a field of its own: the client gets ``PAYLOAD_TOO_LARGE``.

    A reference name (docs/compatibility.md); the server's ``max_payload_size`` check
    answers with the same code before any handler runs, without raising it.
    """

    code = ErrorCode.PAYLOAD_TOO_LARGE


class ConnectRejected(SocketSpecError, RuntimeError):
    """A connection attempt was refused before it became a live connection.

    ``code`` is the WebSocket close code the client sees and ``reason`` says why, so a
    test can assert on either. It is also a ``RuntimeError``, which is what a refused
    connect raised in the reference's TestClient.
    """

    default_code: int = CloseCode.PROTOCOL_ERROR

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.reason = message
        self.code = self.default_code if close_code is None else close_code
        # The ``__error__`` payload sent before the close, when there was one (AUTH_ERROR).
        self.error: dict[str, Any] | None = None

    @property
    def close_code(self) -> int:
        return self.code


class OriginNotAllowedError(ConnectRejected):
    """The Origin header is missing or not in ``allowed_origins``."""


class UnknownNamespaceError(ConnectRejected):
    """No events are registered in the requested namespace."""


class ConnectionAuthError(ConnectRejected):
    """Authentication failed during the connect; the connection was closed with 4001."""

    default_code = CloseCode.AUTH_FAILED


class IllegalTransitionError(SocketSpecError):
    """A state machine was asked for a transition its table does not allow."""


class ConnectionClosedError(SocketSpecError):
    """A client's connection is closed and no matching message is left to read."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed (code={code}, reason={reason!r})")
        self.code = code
        self.reason = reason


class ErrorReply(SocketSpecError):
    """A client's ``call()`` got an ``__error__`` instead of an ``__ack__``."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('code')}: {payload.get('message')}")
        self.payload = payload
        self.code: str | None = payload.get("code")
