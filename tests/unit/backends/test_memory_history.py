"""MemoryRoomStore's room history: positioned broadcasts, join positions, recovery replays,
resume through the app's callback, and a room's history outliving the room by its ttl."""

from __future__ import annotations

import orjson
import pytest
from roommembers import Sink

from socketspec.backends.base import JoinResult
from socketspec.backends.memory import MemoryRoomStore
from socketspec.history import Coverage, HistoryPolicy, Position
from socketspec.types import RoomName


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def policy_for(room: RoomName) -> HistoryPolicy | None:
    return HistoryPolicy(size=3, ttl=60.0) if room.startswith("h:") else None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryRoomStore:
    store = MemoryRoomStore(clock=clock)
    store.use_history(policy_for)
    return store


def frame(n: int) -> bytes:
    return orjson.dumps({"event": "said", "payload": {"n": n}})


def decoded(sink: Sink) -> list[dict[str, object]]:
    return [orjson.loads(f) for f in sink.frames]


async def test_a_history_room_positions_its_broadcasts_and_others_do_not(
    store: MemoryRoomStore,
) -> None:
    sink = Sink("a")
    await store.attach(sink)
    result, position = await store.join_at("h:1", "a", 0)
    assert result is JoinResult.JOINED and position is not None and position.offset == 0
    assert await store.join_at("plain", "a", 0) == (JoinResult.JOINED, None)
    await store.publish("h:1", frame(1))
    await store.publish("plain", frame(2))
    first, second = decoded(sink)
    assert first["room"] == "h:1" and first["pos"] == f"{position.epoch}:1"
    assert list(first)[:2] == ["room", "pos"]
    assert "pos" not in second


async def test_recover_replays_what_was_missed_excluding_what_was_not_for_it(
    store: MemoryRoomStore,
) -> None:
    alice, bob = Sink("a"), Sink("b")
    await store.attach(alice)
    await store.attach(bob)
    _, joined = await store.join_at("h:1", "a", 0)
    await store.join("h:1", "b", 0)
    await store.detach("a")
    await store.publish("h:1", frame(1))
    await store.publish("h:1", frame(2), frozenset({"a"}))
    await store.publish("h:1", frame(3))
    back = Sink("a")
    await store.attach(back)
    replay = await store.recover("h:1", "a", joined)
    assert replay is not None and replay.coverage is Coverage.COVERED
    assert [m["payload"] for m in decoded(back)] == [{"n": 1}, {"n": 3}]
    await store.publish("h:1", frame(4))
    assert [m["payload"] for m in decoded(back)][-1] == {"n": 4}
    assert [m.id for m in await store.members("h:1")] == ["b", "a"]


async def test_a_trimmed_history_is_a_gap_and_nothing_is_replayed(store: MemoryRoomStore) -> None:
    keeper = Sink("k")
    await store.attach(keeper)
    _, joined = await store.join_at("h:1", "k", 0)
    for n in range(5):  # size 3: the first two are gone
        await store.publish("h:1", frame(n))
    back = Sink("a")
    await store.attach(back)
    replay = await store.recover("h:1", "a", joined)
    assert replay is not None and replay.coverage is Coverage.GAP
    assert back.frames == []
    assert replay.position.offset == 5


async def test_a_room_without_history_is_rejoined_without_replay(store: MemoryRoomStore) -> None:
    back = Sink("a")
    await store.attach(back)
    assert await store.recover("plain", "a", None) is None
    assert [m.id for m in await store.members("plain")] == ["a"]


async def test_an_ended_rooms_history_lasts_its_ttl(store: MemoryRoomStore, clock: Clock) -> None:
    sink = Sink("a")
    await store.attach(sink)
    _, joined = await store.join_at("h:1", "a", 0)
    await store.publish("h:1", frame(1))
    await store.detach("a")  # the room ended: its only member dropped
    clock.now += 30
    back = Sink("a")
    await store.attach(back)
    replay = await store.recover("h:1", "a", joined)
    assert replay is not None and replay.coverage is Coverage.COVERED
    assert len(back.frames) == 1
    await store.detach("a")
    clock.now += 61
    await store.publish("other", frame(9))  # any later call sweeps
    assert store.history.get("h:1") is None
    again = Sink("a")
    await store.attach(again)
    replay = await store.recover("h:1", "a", Position(joined.epoch, 1))  # type: ignore[union-attr]
    assert replay is not None and replay.coverage is Coverage.GAP  # a new epoch


async def test_a_broadcast_to_a_room_that_never_existed_keeps_nothing(
    store: MemoryRoomStore,
) -> None:
    await store.publish("h:nobody", frame(1))
    assert store.history.get("h:nobody") is None


async def test_resume_asks_the_app(store: MemoryRoomStore) -> None:
    assert await store.resume("a") is None
    asked: list[str] = []

    async def on_resume(conn_id: str) -> list[tuple[str | int, bytes]]:
        asked.append(conn_id)
        return [("k", b"{}")]

    store.on_resume = on_resume
    assert await store.resume("a") == [("k", b"{}")]
    assert asked == ["a"]
