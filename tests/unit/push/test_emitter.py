"""The emitter's pure parts: URLs, connection ids, and messages in the Redis bridge's format
(read back with the bridge's own decoder), and the API body with a validated payload."""

from __future__ import annotations

import uuid

import orjson
import pytest
from pydantic import BaseModel

from socketspec import Broadcasts, Connection, Emitter, EmitterError, SocketApp, SyncEmitter
from socketspec.cluster.redis_bridge import RedisBridge, decode_message
from socketspec.push.emitter import EMITTER_NODE, _Plan, locate
from socketspec.push.messages import TargetKind


class Shipped(BaseModel):
    order_id: int


def cluster_id(shard: int, node: str) -> str:
    raw = bytearray(uuid.uuid4().bytes)
    raw[0] = shard
    raw[12:16] = bytes.fromhex(node)
    return str(uuid.UUID(bytes=bytes(raw)))


def test_urls() -> None:
    assert _Plan("redis://h:1/0", None, None, None).redis
    http = _Plan("ws://example.org:8080/ws", "k", None, None)
    assert (http.redis, http.host, http.port, http.https) == (False, "example.org", 8080, False)
    assert _Plan("https://example.org", "k", None, None).port == 443
    with pytest.raises(ValueError, match="api_key"):
        Emitter("http://h:1")
    with pytest.raises(ValueError, match="redis://"):
        SyncEmitter("ftp://h")


def test_locate_reads_shard_and_node() -> None:
    conn_id = cluster_id(3, "0a1b2c3d")
    assert locate(conn_id) == ("0a1b2c3d", 3)
    assert locate("not-an-id") is None


def test_redis_messages_are_the_bridge_format() -> None:
    plan = _Plan("redis://h", None, None, None)
    frame = plan.frame(TargetKind.ROOM, "r", "e", {"a": 1})
    channel, data = plan.room_message("r", ["x"], frame)
    assert channel == RedisBridge.room_channel("r")
    decoded = decode_message(data)
    assert decoded is not None
    header, body = decoded
    assert (header["k"], header["r"], header["x"], header["n"]) == (
        "room",
        "r",
        ["x"],
        EMITTER_NODE,
    )
    assert body == frame == b'{"event":"e","payload":{"a":1}}'
    channel, data = plan.all_message([], "/ns", frame)
    assert channel == RedisBridge.ALL_CHANNEL
    conn_id = cluster_id(1, "deadbeef")
    direct = plan.direct_message(conn_id, frame)
    assert direct is not None and direct[0] == RedisBridge.direct_channel("deadbeef", 1)
    kick = plan.direct_message(conn_id, None, "bye")
    assert kick is not None
    decoded = decode_message(kick[1])
    assert decoded is not None and decoded[0] == {"k": "kick", "c": conn_id, "reason": "bye"}


def test_validation_with_the_app_and_the_api_body() -> None:
    app = SocketApp(max_payload_size=300)

    @app.on("tell", broadcasts=[Broadcasts("shipped", model=Shipped)])
    async def tell(conn: Connection) -> None:
        return None

    plan = _Plan("http://h:1", "k", app, None)
    _, path, body = plan.publish_request({"user": "u"}, "shipped", {"order_id": "9"})
    assert path == "/api/publish"
    assert orjson.loads(body) == {"user": "u", "event": "shipped", "payload": {"order_id": 9}}
    with pytest.raises(EmitterError) as error:
        plan.publish_request({"user": "u"}, "shipped", {"order_id": "x"})
    assert error.value.status == 422
    with pytest.raises(EmitterError) as error:
        _Plan("redis://h", None, app, None).frame(TargetKind.ROOM, "r", "e", {"t": "x" * 300})
    assert error.value.status == 413
    bare = _Plan("http://h:1", "k", None, None)
    _, _, body = bare.publish_request({"room": "r"}, "e", Shipped(order_id=1))
    assert orjson.loads(body)["payload"] == {"order_id": 1}
