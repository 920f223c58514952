"""MemoryRoomStore: membership, existence, ttl and delivery in one process."""

from __future__ import annotations

import logging

import pytest
from roommembers import Sink

from socketspec.backends.base import JoinResult, RoomStore
from socketspec.backends.memory import MemoryRoomStore


class Exploding(Sink):
    def deliver(self, frame: bytes) -> bool:
        raise BrokenPipeError("gone")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryRoomStore:
    return MemoryRoomStore(clock=clock)


async def attached(store: MemoryRoomStore, *ids: str) -> list[Sink]:
    sinks = [Sink(i) for i in ids]
    for s in sinks:
        await store.attach(s)
    return sinks


def test_is_a_room_store(store: MemoryRoomStore) -> None:
    assert isinstance(store, RoomStore)


async def test_join_results(store: MemoryRoomStore) -> None:
    await attached(store, "a", "b", "c")
    assert await store.join("r", "a", 2) is JoinResult.JOINED
    assert await store.join("r", "a", 2) is JoinResult.ALREADY_MEMBER
    assert await store.join("r", "b", 2) is JoinResult.JOINED
    assert await store.join("r", "c", 2) is JoinResult.FULL
    assert [c.id for c in await store.members("r")] == ["a", "b"]


async def test_zero_max_members_is_unlimited(store: MemoryRoomStore) -> None:
    ids = [f"c{i}" for i in range(50)]
    await attached(store, *ids)
    for i in ids:
        assert await store.join("big", i, 0) is JoinResult.JOINED
    assert len(await store.members("big")) == 50


async def test_leave(store: MemoryRoomStore) -> None:
    await attached(store, "a", "b")
    await store.join("r", "a", 0)
    await store.join("r", "b", 0)
    assert await store.leave("r", "a") is True
    assert await store.leave("r", "a") is False
    assert await store.leave("nowhere", "b") is False
    assert [c.id for c in await store.members("r")] == ["b"]
    assert await store.exists("r")
    assert await store.leave("r", "b") is True
    assert not await store.exists("r")


async def test_members_in_join_order_and_only_local(store: MemoryRoomStore) -> None:
    await attached(store, "x", "y", "z")
    for i in ("z", "x", "y"):
        await store.join("r", i, 0)
    await store.join("r", "remote", 0)  # a member without a local connection
    assert [c.id for c in await store.members("r")] == ["z", "x", "y"]
    assert await store.members("empty") == []


async def test_detach_returns_rooms_and_removes_everywhere(store: MemoryRoomStore) -> None:
    await attached(store, "a", "b")
    for room in ("one", "two", "three"):
        await store.join(room, "a", 0)
    await store.join("two", "b", 0)
    rooms = await store.detach("a")
    assert sorted(rooms) == ["one", "three", "two"]
    assert len(rooms) == 3
    assert not await store.exists("one")
    assert [c.id for c in await store.members("two")] == ["b"]
    assert not await store.exists("a")  # no longer routable
    assert await store.publish("a", b"x") == 0
    assert [c.id for c in store.local_connections()] == ["b"]
    assert await store.detach("a") == []


async def test_static_rooms(store: MemoryRoomStore) -> None:
    store.declare_room("lobby", static=True, ttl=0)
    assert await store.exists("lobby")
    await attached(store, "a")
    await store.join("lobby", "a", 0)
    await store.leave("lobby", "a")
    assert await store.exists("lobby")
    assert await store.members("lobby") == []


async def test_ttl_room_outlives_its_last_member(store: MemoryRoomStore, clock: Clock) -> None:
    await attached(store, "a")
    store.declare_room("match", static=False, ttl=10)
    assert not await store.exists("match")  # declaring a ttl does not create it
    await store.join("match", "a", 0)
    clock.now = 100.0
    await store.leave("match", "a")
    clock.now = 109.99
    assert await store.exists("match")
    clock.now = 110.0
    assert not await store.exists("match")


async def test_rejoin_within_ttl_cancels_expiry(store: MemoryRoomStore, clock: Clock) -> None:
    await attached(store, "a")
    store.declare_room("match", static=False, ttl=10)
    await store.join("match", "a", 0)
    await store.leave("match", "a")
    clock.now += 5
    await store.join("match", "a", 0)
    clock.now += 100
    assert await store.exists("match")
    await store.leave("match", "a")
    clock.now += 9
    assert await store.exists("match")
    clock.now += 1
    assert not await store.exists("match")


async def test_ttl_starts_on_detach_too(store: MemoryRoomStore, clock: Clock) -> None:
    await attached(store, "a")
    store.declare_room("match", static=False, ttl=10)
    await store.join("match", "a", 0)
    await store.detach("a")
    clock.now += 9
    assert await store.exists("match")
    clock.now += 1
    assert not await store.exists("match")


async def test_publish_to_room_with_exclude(store: MemoryRoomStore) -> None:
    a, b, c = await attached(store, "a", "b", "c")
    for s in (a, b, c):
        await store.join("r", s.id, 0)
    assert await store.publish("r", b"frame-1") == 3
    assert await store.publish("r", b"frame-2", frozenset({"b"})) == 2
    assert a.frames == [b"frame-1", b"frame-2"]
    assert b.frames == [b"frame-1"]
    assert c.frames == [b"frame-1", b"frame-2"]
    assert await store.publish("missing", b"x") == 0


async def test_publish_same_frame_object(store: MemoryRoomStore) -> None:
    a, b = await attached(store, "a", "b")
    await store.join("r", "a", 0)
    await store.join("r", "b", 0)
    frame = b'{"event":"x","payload":{}}'
    await store.publish("r", frame)
    assert a.frames[0] is frame and b.frames[0] is frame


async def test_publish_to_own_id_room(store: MemoryRoomStore) -> None:
    a, b = await attached(store, "a", "b")
    assert await store.exists("a")
    assert await store.members("a") == [a.conn]
    assert await store.publish("a", b"dm") == 1
    assert await store.publish("a", b"dm", frozenset({"a"})) == 0
    assert a.frames == [b"dm"]
    assert b.frames == []


async def test_failing_member_does_not_stop_publish(
    store: MemoryRoomStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = Sink("first")
    bad = Exploding("bad")
    last = Sink("last")
    refusing = Sink("refusing", accept=False)
    for s in (first, bad, last, refusing):
        await store.attach(s)
        await store.join("r", s.id, 0)
    with caplog.at_level(logging.ERROR, logger="socketspec.rooms"):
        assert await store.publish("r", b"f") == 2
        assert await store.publish_all(b"g") == 2
    assert first.frames == [b"f", b"g"]
    assert last.frames == [b"f", b"g"]
    assert len([r for r in caplog.records if "bad" in r.getMessage()]) == 2


async def test_publish_all_with_exclude_and_namespace(store: MemoryRoomStore) -> None:
    a = Sink("a")
    b = Sink("b", namespace="/chat")
    c = Sink("c", namespace="/chat")
    for s in (a, b, c):
        await store.attach(s)
    assert await store.publish_all(b"1") == 3
    assert await store.publish_all(b"2", frozenset({"a", "b"})) == 1
    assert await store.publish_all(b"3", namespace="/chat") == 2
    assert await store.publish_all(b"4", frozenset({"c"}), namespace="/chat") == 1
    assert a.frames == [b"1"]
    assert b.frames == [b"1", b"3", b"4"]
    assert c.frames == [b"1", b"2", b"3"]


async def test_local_connections(store: MemoryRoomStore) -> None:
    a, b = await attached(store, "a", "b")
    assert list(store.local_connections()) == [a.conn, b.conn]
