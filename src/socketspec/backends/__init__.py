"""Room stores: where room membership lives and how broadcasts reach members."""

from socketspec.backends.base import BackendAdapter, JoinResult, LocalMember, RoomStore
from socketspec.backends.memory import MemoryBackend, MemoryRoomStore
from socketspec.backends.redis import RedisBackend

__all__ = [
    "BackendAdapter",
    "JoinResult",
    "LocalMember",
    "MemoryBackend",
    "MemoryRoomStore",
    "RedisBackend",
    "RoomStore",
]
