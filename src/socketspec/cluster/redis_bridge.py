"""The former single module of the Redis bridge, kept importable: the bridge is now the
``socketspec.cluster.redis`` package (settings, scripts, codec, bridge)."""

from socketspec.cluster.redis.bridge import (
    PREFIX,
    TRANSITIONS,
    BridgeHandler,
    BridgeState,
    RedisBridge,
)
from socketspec.cluster.redis.codec import (
    RemoteMember,
    decode_message,
    encode_message,
    member_value,
    parse_member,
)
from socketspec.cluster.redis.scripts import MEMBERS_SCRIPT

__all__ = [
    "MEMBERS_SCRIPT",
    "PREFIX",
    "TRANSITIONS",
    "BridgeHandler",
    "BridgeState",
    "RedisBridge",
    "RemoteMember",
    "decode_message",
    "encode_message",
    "member_value",
    "parse_member",
]
