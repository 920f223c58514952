"""Room history in the cluster room store without Redis: the home positions a history
room's broadcasts, every instance keeps a copy, a recovering member gets what it missed and
then live traffic with no gap and no duplicate, a new home is rebuilt from the copies.
Two stores linked over real Unix sockets (historykit.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from historykit import (
    close_all,
    crash,
    eventually,
    member,
    offsets,
    payloads,
    room_homed_on,
    said,
    serving,
    start_store,
)

from socketspec import metrics
from socketspec.backends.base import JoinResult, ParkedAcks
from socketspec.cluster.asks import RoomUnavailableError
from socketspec.cluster.store import ClusterRoomStore
from socketspec.history import Coverage, Position
from socketspec.types import ConnectionId

ROOM0 = room_homed_on(0)  # homed on shard 0
ROOM1 = room_homed_on(1)
PLAIN = room_homed_on(0, "plain-")  # no history


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[ClusterRoomStore, ClusterRoomStore]]:
    first, second = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    await serving(first, second)
    yield first, second
    await close_all(first, second)


async def test_positions_are_given_at_the_home_in_order_across_shards(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    a, b = await member(s0), await member(s1)
    assert await s0.join(ROOM0, a.id, 0) is JoinResult.JOINED
    assert await s1.join(ROOM0, b.id, 0) is JoinResult.JOINED
    for n in range(1, 7):
        sender = s0 if n % 2 else s1
        assert await sender.publish(ROOM0, said(n)) == 2
    await eventually(lambda: len(a.frames) == 6 and len(b.frames) == 6)
    assert a.frames == b.frames
    assert offsets(a.frames) == [1, 2, 3, 4, 5, 6]
    assert payloads(a.frames) == [1, 2, 3, 4, 5, 6]
    home, copy = s0.history.get(ROOM0), s1.history.get(ROOM0)
    assert home is not None and copy is not None
    assert (copy.epoch, copy.last_offset, len(copy)) == (home.epoch, 6, 6)


async def test_every_instance_keeps_a_copy_even_without_members(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    await s0.publish(ROOM0, said(1))  # nobody in the room anywhere
    await eventually(lambda: s1.history.get(ROOM0) is not None)
    copy = s1.history.get(ROOM0)
    assert copy is not None and [entry.offset for entry in copy] == [1]


async def test_rooms_without_history_carry_no_position(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    b = await member(s1)
    await s1.join(PLAIN, b.id, 0)
    assert await s1.publish(PLAIN, said(1)) == 1
    await eventually(lambda: len(b.frames) == 1)
    assert b.frames == [said(1)]
    assert PLAIN not in s0.history and PLAIN not in s1.history


async def test_join_at_answers_the_position_from_either_shard(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    await s0.publish(ROOM0, said(1))
    await s0.publish(ROOM0, said(2))
    epoch = s0.history.get(ROOM0).epoch  # type: ignore[union-attr]
    a, b = await member(s0), await member(s1)
    assert await s0.join_at(ROOM0, a.id, 0) == (JoinResult.JOINED, Position(epoch, 2))
    assert await s1.join_at(ROOM0, b.id, 0) == (JoinResult.JOINED, Position(epoch, 2))
    assert await s1.join_at(PLAIN, b.id, 0) == (JoinResult.JOINED, None)
    assert await s1.join_at(ROOM0, b.id, 0) == (JoinResult.ALREADY_MEMBER, Position(epoch, 2))


@pytest.mark.parametrize("shard", [0, 1], ids=["at-the-home", "on-another-shard"])
async def test_recover_replays_what_was_missed_then_live_traffic_follows(
    pair: tuple[ClusterRoomStore, ClusterRoomStore], shard: int
) -> None:
    s0, s1 = pair
    for n in range(1, 6):
        await s0.publish(ROOM0, said(n))
    epoch = s0.history.get(ROOM0).epoch  # type: ignore[union-attr]
    store = pair[shard]
    back = await member(store)
    replay = await store.recover(ROOM0, back.id, Position(epoch, 2))
    assert replay is not None and replay.coverage is Coverage.COVERED
    assert replay.position == Position(epoch, 5)
    assert [entry.offset for entry in replay.entries] == [3, 4, 5]
    assert offsets(back.frames) == [3, 4, 5]  # delivered by the store itself
    await s1.publish(ROOM0, said(6))
    await eventually(lambda: len(back.frames) == 4)
    await asyncio.sleep(0.05)
    assert offsets(back.frames) == [3, 4, 5, 6]
    assert back.id in {conn.id for conn in await s0.members(ROOM0)}


async def test_recover_while_broadcasts_flow_has_no_gap_and_no_duplicate(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    await s0.publish(ROOM0, said(1))
    epoch = s0.history.get(ROOM0).epoch  # type: ignore[union-attr]
    back = await member(s1)

    async def flow() -> None:
        for n in range(2, 42):
            await s0.publish(ROOM0, said(n))
            await asyncio.sleep(0)

    flowing = asyncio.create_task(flow())
    await asyncio.sleep(0.002)
    await s1.recover(ROOM0, back.id, Position(epoch, 1))
    await flowing
    await eventually(lambda: len(back.frames) == 40)
    assert offsets(back.frames) == list(range(2, 42))


async def test_a_position_the_history_does_not_cover_is_a_gap_and_the_member_rejoins(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    await s0.publish(ROOM0, said(1))
    back = await member(s1)
    replay = await s1.recover(ROOM0, back.id, Position("otherep0", 7))
    assert replay is not None and replay.coverage is Coverage.GAP
    assert back.frames == []
    await s0.publish(ROOM0, said(2))
    await eventually(lambda: len(back.frames) == 1)
    assert offsets(back.frames) == [2]


async def test_the_replay_leaves_out_what_excluded_the_member(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    back = await member(s1)
    epoch = s0.history.open(ROOM0).epoch  # type: ignore[union-attr]
    await s0.publish(ROOM0, said(1))
    await s0.publish(ROOM0, said(2), frozenset({back.id}))
    await s0.publish(ROOM0, said(3))
    replay = await s1.recover(ROOM0, back.id, Position(epoch, 0))
    assert replay is not None and replay.coverage is Coverage.COVERED
    assert payloads(back.frames) == [1, 3]


async def test_recovery_of_a_room_without_history_only_rejoins(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    back = await member(s1)
    assert await s1.recover(PLAIN, back.id, None) is None
    assert back.id in {conn.id for conn in await s0.members(PLAIN)}


async def test_a_new_home_is_rebuilt_from_the_copies_after_a_crash(tmp_path: Path) -> None:
    s0, s1 = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    try:
        await serving(s0, s1)
        b = await member(s1)
        await s1.join(ROOM0, b.id, 0)
        for n in range(1, 5):
            await s1.publish(ROOM0, said(n))
        await eventually(lambda: len(b.frames) == 4)
        epoch = s0.history.get(ROOM0).epoch  # type: ignore[union-attr]
        crash(s0)
        await eventually(lambda: not s1.links.is_up(0))

        # While the home is down a history room's broadcast waits for it (never degraded).
        sending = asyncio.create_task(s1.publish(ROOM0, said(5)))
        await asyncio.sleep(0.2)
        assert not sending.done()
        s0 = await start_store(tmp_path, 0, generation=2)
        await serving(s0)
        assert await sending == 1
        rebuilt = s0.history.get(ROOM0)
        assert rebuilt is not None and rebuilt.epoch == epoch
        assert [entry.offset for entry in rebuilt] == [1, 2, 3, 4, 5]
        await eventually(lambda: len(b.frames) == 5)
        assert offsets(b.frames) == [1, 2, 3, 4, 5]
        # A member that saw up to 2 recovers on the new home from the copy: nothing lost.
        back = await member(s1)
        replay = await s1.recover(ROOM0, back.id, Position(epoch, 2))
        assert replay is not None and replay.coverage is Coverage.COVERED
        assert offsets(back.frames) == [3, 4, 5]
    finally:
        await close_all(s0, s1)


async def test_a_broadcast_resent_after_its_home_died_is_not_appended_twice(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    b = await member(s1)
    await s1.join(ROOM0, b.id, 0)
    await s1.publish(ROOM0, said(1))
    home = s0.history.get(ROOM0)
    assert home is not None
    entry = next(iter(home))
    # The same Publish (same origin) reaching a home that already has it.
    assert s0._publish_positioned(ROOM0, home.policy, said(1), [], entry.origin) == 1
    assert entry.origin and len(home) == 1
    await asyncio.sleep(0.05)
    assert offsets(b.frames) == [1]  # the copy knew the position: not delivered again


async def test_a_history_broadcast_fails_visibly_when_the_home_stays_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("socketspec.cluster.store.ASK_TIMEOUT", 0.3)
    s0, s1 = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    try:
        await serving(s0, s1)
        crash(s0)
        await eventually(lambda: not s1.links.is_up(0))
        with pytest.raises(RoomUnavailableError):
            await s1.publish(ROOM0, said(1))
        assert await s1.publish(PLAIN, said(1)) == 0  # without history: degraded, not failed
    finally:
        await close_all(s0, s1)


async def test_resume_reaches_the_shard_the_connection_id_names(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:
    s0, s1 = pair
    asked: list[tuple[int, str]] = []

    def parked(shard: int) -> object:
        async def on_resume(conn_id: ConnectionId) -> ParkedAcks:
            asked.append((shard, conn_id))
            return [(7, b'{"event":"__ack__","id":7}')]

        return on_resume

    s0.on_resume = parked(0)  # type: ignore[assignment]
    s1.on_resume = parked(1)  # type: ignore[assignment]
    on_1, on_0 = s1.new_connection_id(), s0.new_connection_id()
    assert await s0.resume(on_1) == [(7, b'{"event":"__ack__","id":7}')]
    assert await s0.resume(on_0) == [(7, b'{"event":"__ack__","id":7}')]
    assert asked == [(1, on_1), (0, on_0)]
    assert await s0.resume("not-a-connection-id") is None


async def test_resume_of_a_connection_on_a_dead_shard_is_none(tmp_path: Path) -> None:
    s0, s1 = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    try:
        await serving(s0, s1)
        gone = s0.new_connection_id()
        crash(s0)
        await eventually(lambda: not s1.links.is_up(0))
        assert await s1.resume(gone) is None
    finally:
        await close_all(s0, s1)


async def test_the_gauges_count_what_is_kept_and_ended_rooms_are_discarded(
    pair: tuple[ClusterRoomStore, ClusterRoomStore],
) -> None:

    s0 = pair[0]
    a = await member(s0)
    await s0.join(ROOM0, a.id, 0)
    await s0.publish(ROOM0, said(1))
    await s0.publish(ROOM0, said(2))
    s0.sweep_history()
    assert metrics.room_history_messages._value.get() == 2
    assert metrics.room_history_bytes._value.get() == sum(len(f) for f in a.frames)
    await s0.leave(ROOM0, a.id)
    s0.sweep_history()
    assert ROOM0 in s0.history  # the room ended, but not its ttl ago
    s0._history_touched[ROOM0] -= 61  # as if its ttl (60 s) had passed since
    s0.sweep_history()
    assert ROOM0 not in s0.history
    assert metrics.room_history_messages._value.get() == 0
