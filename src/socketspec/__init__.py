"""socketspec: WebSocket event APIs written like FastAPI apps, served on every core.

The public names most applications need are importable from here; each also
lives at its documented module path (``socketspec.app.SocketApp``,
``socketspec.rooms.Room``, ...).
"""

from socketspec.app import SocketApp
from socketspec.backends.base import BackendAdapter
from socketspec.backends.memory import MemoryBackend
from socketspec.backends.redis import RedisBackend
from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.di import Depends
from socketspec.errors import (
    ERROR_CODES,
    RESERVED_EVENTS,
    AuthenticationError,
    CloseCode,
    ConfigurationError,
    ConnectRejected,
    DuplicateEventError,
    ErrorCode,
    EventError,
    ReservedEventNameError,
    RoomFullError,
    RoomNotFoundError,
    RoomPermissionError,
    SocketSpecError,
    SystemEvent,
)
from socketspec.push.emitter import Emitter, EmitterError, EmitterUnavailableError, SyncEmitter
from socketspec.recovery import Recovery
from socketspec.registry import Broadcasts, Emits, EventDefinition
from socketspec.rooms import Room
from socketspec.security.auth import APIKeyAuth, AuthBackend, JWTAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig
from socketspec.testing import TestClient, TestConnection

__version__ = "0.1.0"

__all__ = [
    "ERROR_CODES",
    "RESERVED_EVENTS",
    "APIKeyAuth",
    "AuthBackend",
    "AuthenticationError",
    "BackendAdapter",
    "Broadcasts",
    "CloseCode",
    "ConfigurationError",
    "ConnectRejected",
    "Connection",
    "Depends",
    "DuplicateEventError",
    "Emits",
    "Emitter",
    "EmitterError",
    "EmitterUnavailableError",
    "ErrorCode",
    "EventDefinition",
    "EventError",
    "Identity",
    "JWTAuth",
    "MemoryBackend",
    "RateLimit",
    "Recovery",
    "RedisBackend",
    "ReservedEventNameError",
    "Room",
    "RoomFullError",
    "RoomNotFoundError",
    "RoomPermissionError",
    "SessionConfig",
    "SessionInfo",
    "SocketApp",
    "SocketSpecError",
    "SyncEmitter",
    "SystemEvent",
    "TestClient",
    "TestConnection",
    "__version__",
]
