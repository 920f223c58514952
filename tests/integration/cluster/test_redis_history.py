"""The Redis bridge's shared room history against a real ``redis-server``, bridge to bridge
(each bridge is what one node's shard holds): the publishing script positions a history
room's broadcasts contiguously, with exactly ``history.with_position``'s bytes, keeps them
in the room's bounded, expiring stream and publishes them flagged with their position;
every node, the publisher's own included, gets them in Redis's one order; a node started
later reads the stream back (``history_since``); the nodes agree on one recovery secret.

The cluster's own history rooms over real nodes are in test_redis_nodes.py and
tests/integration/recovery/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from clusterkit import RedisServer

from socketspec.cluster.redis.bridge import POSITION_KEEP, RedisBridge
from socketspec.history import HistoryPolicy, Position, room_json, with_position

POLICY = HistoryPolicy(size=50, ttl=30.0)


class Recorder:
    """A shard's store as the bridge sees it: records what reaches it."""

    def __init__(self, policy: HistoryPolicy | None = POLICY) -> None:
        self.policy = policy
        self.room_messages: list[tuple[str, frozenset[str], bytes, str, Position | None]] = []
        self.arrived = asyncio.Event()

    def on_room_message(
        self,
        room: str,
        exclude: frozenset[str],
        frame: bytes,
        origin: str = "",
        position: Position | None = None,
    ) -> None:
        self.room_messages.append((room, exclude, frame, origin, position))
        self.arrived.set()

    def on_all_message(
        self, exclude: frozenset[str], namespace: str | None, frame: bytes
    ) -> None: ...

    def on_direct(self, conn_id: str, frame: bytes) -> None: ...

    def on_kick(self, conn_id: str, reason: str) -> None: ...

    def homed_members(self) -> list[tuple[str, str, int, dict[str, Any]]]:
        return []

    def history_policy_for(self, room: str) -> HistoryPolicy | None:
        return self.policy

    def positions(self, room: str) -> list[Position | None]:
        return [message[4] for message in self.room_messages if message[0] == room]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.room_messages) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    redis_server = RedisServer(tmp_path_factory.mktemp("redis-history"))
    redis_server.start()
    try:
        yield redis_server
    finally:
        redis_server.kill()


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def started(server: RedisServer, node: str, handler: Recorder, shard: int = 0) -> RedisBridge:
    bridge = RedisBridge(server.url, node, shard, 5.0, handler)
    await bridge.start()
    assert bridge.is_up, "the bridge did not connect to the test's redis-server"
    return bridge


async def listening(bridge: RedisBridge, room: str, conn_id: str) -> None:
    """This node has a member in ``room``: its bridge listens to the room's channel."""
    joined = bridge.join(room, conn_id, bridge.shard, {}, 0)
    assert joined is not None
    await joined


def frame_of(seq: int) -> bytes:
    return orjson.dumps({"event": "said", "payload": {"seq": seq}})


async def test_positions_are_contiguous_and_the_bytes_are_with_positions(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    room = "history-bytes"
    handler = Recorder()
    bridge = await started(server, "0a0a0a01", handler)
    try:
        await listening(bridge, room, "c1")
        futures = []
        for seq in range(1, 21):
            future = bridge.publish_history(
                room, room_json(room), ["c9"] if seq == 3 else [], frame_of(seq), f"o{seq}", POLICY
            )
            assert future is not None
            futures.append(future)
        positions = await asyncio.gather(*futures)
        assert all(position is not None for position in positions)
        epoch = positions[0].epoch  # type: ignore[union-attr]
        assert positions == [Position(epoch, offset) for offset in range(1, 21)]

        # This node's own history messages come back to it, in order, positioned.
        await handler.wait_for(20)
        assert handler.positions(room) == positions
        for seq, (got_room, exclude, frame, origin, position) in enumerate(
            handler.room_messages, 1
        ):
            assert got_room == room and origin == f"o{seq}"
            assert exclude == (frozenset({"c9"}) if seq == 3 else frozenset())
            assert position is not None
            assert frame == with_position(frame_of(seq), room_json(room), position)

        # The stream keeps the same bytes with their offset, origin and exclude; every key
        # of the room's history expires.
        entries = await raw.xrange(f"socketspec:history:{room}")
        assert [int(fields[b"offset"]) for _, fields in entries] == list(range(1, 21))
        assert entries[2][1][b"exclude"] == b'["c9"]' and entries[2][1][b"origin"] == b"o3"
        assert [fields[b"frame"] for _, fields in entries] == [m[2] for m in handler.room_messages]
        assert 0 < await raw.ttl(f"socketspec:history:{room}") <= 30
        for key in ("history-epoch", "history-offset"):
            assert 30 < await raw.ttl(f"socketspec:{key}:{room}") <= POSITION_KEEP
    finally:
        await bridge.close()


async def test_a_room_name_that_json_escapes_is_spliced_the_same(server: RedisServer) -> None:
    room = 'quote"and\\slash-é'
    handler = Recorder()
    bridge = await started(server, "0a0a0a02", handler)
    try:
        await listening(bridge, room, "c1")
        future = bridge.publish_history(room, room_json(room), [], frame_of(1), "", POLICY)
        assert future is not None
        position = await future
        assert position is not None
        await handler.wait_for(1)
        frame = handler.room_messages[0][2]
        assert frame == with_position(frame_of(1), room_json(room), position)
        assert orjson.loads(frame) == {
            "room": room,
            "pos": str(position),
            "event": "said",
            "payload": {"seq": 1},
        }
    finally:
        await bridge.close()


async def test_the_stream_is_bounded_by_the_history_size(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    room = "history-bounded"
    policy = HistoryPolicy(size=10, ttl=30.0)
    handler = Recorder(policy)
    bridge = await started(server, "0a0a0a03", handler)
    try:
        futures = [
            bridge.publish_history(room, room_json(room), [], frame_of(seq), "", policy)
            for seq in range(1, 1001)
        ]
        last = await futures[-1]  # type: ignore[misc]
        assert last is not None and last.offset == 1000
        # MAXLEN ~ trims by whole nodes of the stream: about the size, never the thousand.
        assert 10 <= await raw.xlen(f"socketspec:history:{room}") <= 200
        # What a reader is given stays within the size, like the home's own ring.
        since = bridge.history_since(room, Position(last.epoch, 990), 100)
        assert since is not None
        assert [entry.offset for entry in await since] == list(range(991, 1001))
        gone = bridge.history_since(room, Position(last.epoch, 500), 100)
        assert gone is not None and await gone == []  # trimmed past it: no run
    finally:
        await bridge.close()


async def test_two_nodes_publishing_to_one_room_see_one_order(server: RedisServer) -> None:
    room = "history-two-nodes"
    handlers = [Recorder(), Recorder()]
    bridges = [
        await started(server, "0b0b0b01", handlers[0]),
        await started(server, "0b0b0b02", handlers[1]),
    ]
    try:
        for index, bridge in enumerate(bridges):
            await listening(bridge, room, f"member-{index}")
        per_node = 150

        async def stream(index: int) -> list[Position | None]:
            bridge = bridges[index]
            out = []
            for seq in range(per_node):
                body = orjson.dumps({"event": "said", "payload": {"node": index, "seq": seq}})
                future = bridge.publish_history(room, room_json(room), [], body, "", POLICY)
                assert future is not None
                out.append(await future if seq % 10 == 9 else None)
                if seq % 10 == 9:
                    await asyncio.sleep(0)
            return out

        await asyncio.gather(stream(0), stream(1))
        for handler in handlers:
            await handler.wait_for(2 * per_node)
        first, second = ([m[2] for m in handler.room_messages] for handler in handlers)
        assert first == second, "the two nodes saw the room's messages in different orders"
        positions = handlers[0].positions(room)
        epoch = positions[0].epoch  # type: ignore[union-attr]
        assert positions == [Position(epoch, offset) for offset in range(1, 2 * per_node + 1)]
        # Each sender's messages keep that sender's order within the one order.
        for index in range(2):
            seqs = [
                orjson.loads(frame)["payload"]["seq"]
                for frame in first
                if orjson.loads(frame)["payload"]["node"] == index
            ]
            assert seqs == list(range(per_node))
    finally:
        for bridge in bridges:
            await bridge.close()


async def test_a_node_started_later_reads_the_history_back(server: RedisServer) -> None:
    room = "history-restart"
    handler = Recorder()
    bridge = await started(server, "0c0c0c01", handler)
    try:
        published: list[Position] = []
        for seq in range(1, 11):
            exclude = ["gone"] if seq == 5 else []
            future = bridge.publish_history(
                room, room_json(room), exclude, frame_of(seq), f"o{seq}", POLICY
            )
            assert future is not None
            position = await future
            assert position is not None
            published.append(position)
    finally:
        await bridge.close()
    epoch = published[0].epoch

    # The node restarted: a new process, a new node id, nothing in memory.
    restarted = await started(server, "0c0c0c02", Recorder())
    try:

        async def since(position: Position, limit: int = 100) -> list[Any]:
            future = restarted.history_since(room, position, limit)
            assert future is not None
            return await future

        entries = await since(Position(epoch, 6))
        assert [entry.offset for entry in entries] == [7, 8, 9, 10]
        assert [entry.origin for entry in entries] == ["o7", "o8", "o9", "o10"]
        assert entries[0].frame == with_position(frame_of(7), room_json(room), published[6])
        everything = await since(Position(epoch, 0))
        assert [entry.offset for entry in everything] == list(range(1, 11))
        assert everything[4].exclude == ("gone",)
        assert [entry.offset for entry in await since(Position(epoch, 2), limit=3)] == [3, 4, 5]
        assert await since(Position(epoch, 10)) == []  # nothing newer
        assert await since(Position("otherepo", 3)) == []  # another epoch: no run
        assert await since(Position(epoch, 11)) == []  # ahead of the history
        assert await since(Position(epoch, 3), limit=0) == []
    finally:
        await restarted.close()


async def test_a_history_whose_offset_was_lost_starts_a_new_epoch(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    room = "history-new-epoch"
    bridge = await started(server, "0d0d0d01", Recorder())
    try:

        async def publish(seq: int) -> Position:
            future = bridge.publish_history(room, room_json(room), [], frame_of(seq), "", POLICY)
            assert future is not None
            position = await future
            assert position is not None
            return position

        first = await publish(1)
        assert (await publish(2)).offset == 2
        await raw.delete(f"socketspec:history-offset:{room}")  # evicted, say
        again = await publish(3)
        assert again.offset == 1 and again.epoch != first.epoch
        assert await raw.xlen(f"socketspec:history:{room}") == 1  # the old epoch's are gone
    finally:
        await bridge.close()


async def test_the_nodes_share_the_first_recovery_secret(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    await raw.delete("socketspec:recovery-secret")
    first = await started(server, "0e0e0e01", Recorder())
    second = await started(server, "0e0e0e02", Recorder(), shard=1)
    try:
        assert await first.shared_secret("secret-of-the-first") == "secret-of-the-first"
        assert await second.shared_secret("secret-of-the-second") == "secret-of-the-first"
        assert await first.shared_secret("another") == "secret-of-the-first"
    finally:
        await first.close()
        await second.close()


async def test_without_redis_there_is_no_shared_history_and_the_secret_is_ones_own() -> None:
    bridge = RedisBridge("redis://127.0.0.1:1", "0f0f0f01", 0, 5.0, Recorder())
    await bridge.start(wait=0.2)
    try:
        assert bridge.publish_history("r", room_json("r"), [], frame_of(1), "", POLICY) is None
        assert bridge.history_since("r", Position("abcdefgh", 0), 10) is None
        assert await bridge.shared_secret("mine") == "mine"
    finally:
        await bridge.close()


async def test_a_join_position_is_in_the_epoch_the_rooms_next_messages_get(
    server: RedisServer,
) -> None:
    room = "history-join-position"
    bridge = await started(server, "0d0d0d02", Recorder())
    try:

        async def position_now() -> Position | None:
            future = bridge.history_position(room, POLICY)
            assert future is not None
            return await future

        before = await position_now()  # a room never sent to: its epoch starts now
        assert before is not None and before.offset == 0
        assert await position_now() == before  # and stays
        future = bridge.publish_history(room, room_json(room), [], frame_of(1), "", POLICY)
        assert future is not None
        assert await future == Position(before.epoch, 1)
        assert await position_now() == Position(before.epoch, 1)
        # A reader from the join's position gets what came after.
        since = bridge.history_since(room, before, 10)
        assert since is not None
        assert [entry.offset for entry in await since] == [1]
    finally:
        await bridge.close()


async def test_a_member_recovered_on_another_node_is_recorded_where_it_is_now(
    server: RedisServer, raw: aioredis.Redis
) -> None:
    room = "history-moved-member"
    old = await started(server, "0d0d0d03", Recorder())
    new = await started(server, "0d0d0d04", Recorder(), shard=1)
    try:
        joined = old.join(room, "conn-1", 0, {"user_id": "u"}, 0)
        assert joined is not None and (await joined).value == "joined"
        again = new.join(room, "conn-1", 1, {"user_id": "u"}, 0)  # its session, recovered
        assert again is not None and (await again).value == "already_member"
        record = await raw.hget(f"socketspec:members:{room}", "conn-1")
        assert record is not None and record.startswith(b"0d0d0d04:1:")
    finally:
        await old.close()
        await new.close()
