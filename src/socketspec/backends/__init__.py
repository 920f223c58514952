"""Room stores: where room membership lives and how broadcasts reach members."""

from socketspec.backends.base import JoinResult, LocalMember, RoomStore
from socketspec.backends.memory import MemoryRoomStore

__all__ = ["JoinResult", "LocalMember", "MemoryRoomStore", "RoomStore"]
