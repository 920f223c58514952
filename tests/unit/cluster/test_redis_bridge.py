"""The Redis bridge's sans-I/O parts: its message and member encodings, its state table,
the node id it insists on, and how the cluster store names and locates connections once
it has a node id. The bridge against a real Redis is in tests/integration/cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from socketspec.cluster.redis.bridge import TRANSITIONS, BridgeState, RedisBridge
from socketspec.cluster.redis.codec import (
    decode_message,
    encode_message,
    member_value,
    parse_member,
)
from socketspec.cluster.store import ClusterRoomStore
from socketspec.history import HistoryPolicy, Position


class NullHandler:
    def on_room_message(
        self,
        room: str,
        exclude: frozenset[str],
        frame: bytes,
        origin: str = "",
        position: Position | None = None,
    ) -> None: ...

    def on_all_message(
        self, exclude: frozenset[str], namespace: str | None, frame: bytes
    ) -> None: ...

    def on_direct(self, conn_id: str, frame: bytes) -> None: ...

    def on_kick(self, conn_id: str, reason: str) -> None: ...

    def homed_members(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        return []

    def history_policy_for(self, room: str) -> HistoryPolicy | None:
        return None


def test_a_message_carries_its_header_and_the_frame_bytes_untouched() -> None:
    frame = b'{"event":"said","payload":{"text":"a\\nb"}}\n\x00\xff'
    header = {"k": "room", "n": "0a1b2c3d", "r": "lobby", "x": ["c1"], "t": 1.5}
    assert decode_message(encode_message(header, frame)) == (header, frame)


@pytest.mark.parametrize("data", [b"no newline", b"not json\nframe", b"[1,2]\nframe"])
def test_an_unreadable_message_decodes_to_none(data: bytes) -> None:
    assert decode_message(data) is None


def test_a_member_value_names_node_shard_and_info() -> None:
    info = {"user_id": "u1", "metadata": {"nick": "a:b"}}
    value = member_value("0a1b2c3d", 3, info)
    assert value.startswith(b"0a1b2c3d:3:")
    member = parse_member(b"conn-1", value)
    assert member is not None
    assert (member.conn_id, member.node, member.shard, member.info) == (
        "conn-1",
        "0a1b2c3d",
        3,
        info,
    )


@pytest.mark.parametrize("value", [b"garbage", b"0a1b2c3d:x:{}", b"0a1b2c3d:1:not json"])
def test_a_malformed_member_value_is_skipped(value: bytes) -> None:
    assert parse_member(b"conn-1", value) is None


def test_the_state_table_allows_reconnecting_but_nothing_after_closed() -> None:
    assert BridgeState.UP in TRANSITIONS[BridgeState.DOWN]
    assert BridgeState.DOWN in TRANSITIONS[BridgeState.UP]
    assert TRANSITIONS[BridgeState.CLOSED] == frozenset()
    assert set(TRANSITIONS) == set(BridgeState)


async def test_an_illegal_move_names_both_states() -> None:
    bridge = RedisBridge("redis://127.0.0.1:1", "0a1b2c3d", 0, 15.0, NullHandler())
    bridge._move(BridgeState.DOWN)
    bridge._move(BridgeState.CLOSED)
    with pytest.raises(RuntimeError, match="closed to up"):
        bridge._move(BridgeState.UP)


def test_a_node_id_is_eight_hex_characters() -> None:
    with pytest.raises(ValueError, match="8 hex"):
        RedisBridge("redis://127.0.0.1:1", "node-1", 0, 15.0, NullHandler())


async def test_while_redis_is_down_nothing_is_queued_and_leaves_are_remembered() -> None:
    bridge = RedisBridge("redis://127.0.0.1:1", "0a1b2c3d", 0, 15.0, NullHandler())
    assert bridge.join("lobby", "c1", 0, {}, 10) is None  # the caller decides alone
    bridge.leave("lobby", "c2")
    assert ("lobby", "c2") in bridge._pending_leaves
    assert not bridge.send_direct("0a1b2c3d", 1, "c3", b"frame")
    assert await bridge.members("lobby") is None
    policy = HistoryPolicy(size=10)
    assert bridge.publish_history("lobby", b'"lobby"', [], b"{}", "", policy) is None
    assert bridge.history_since("lobby", Position("abcdefgh", 0), 10) is None
    assert bridge.history_position("lobby", policy) is None
    assert await bridge.shared_secret("mine") == "mine"
    assert bridge._queue.empty()


def test_connection_ids_name_the_node_and_shard(tmp_path: Path) -> None:
    store = ClusterRoomStore(2, 4, 1, tmp_path, redis_url="redis://127.0.0.1:1", node="0a1b2c3d")
    conn_id = store.new_connection_id()
    assert store.locate(conn_id) == ("0a1b2c3d", 2)
    assert store.owner_of(conn_id) == 2
    other = ClusterRoomStore(2, 4, 1, tmp_path, redis_url="redis://127.0.0.1:1", node="ffffffff")
    remote_id = other.new_connection_id()
    assert store.owner_of(remote_id) is None  # another node's
    assert store._remote(remote_id) == ("ffffffff", 2)
    assert store._remote(conn_id) is None  # this node's


def test_without_redis_ids_name_only_the_shard(tmp_path: Path) -> None:
    store = ClusterRoomStore(1, 2, 1, tmp_path)
    conn_id = store.new_connection_id()
    assert store.owner_of(conn_id) == 1
    assert store._remote(conn_id) is None
