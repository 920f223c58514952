"""Room stores: where room membership lives and how broadcasts reach members."""

from socketspec.backends.base import JoinResult, LocalMember, RoomStore
from socketspec.backends.memory import MemoryRoomStore
from socketspec.backends.redis import RedisBackend

__all__ = ["JoinResult", "LocalMember", "MemoryRoomStore", "RedisBackend", "RoomStore"]
