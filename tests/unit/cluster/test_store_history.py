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
    POLICY,
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
from socketspec.cluster.codec import Deliver, HistorySync, Positioned, Publish
from socketspec.cluster.links import OwnRooms
from socketspec.cluster.store import ClusterRoomStore
from socketspec.history import Coverage, Position, room_json, with_position
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
    assert s0._publish_positioned(ROOM0, home.policy, said(1), [], entry.origin) == (1, None)
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


async def test_a_rolling_restarts_successor_takes_the_history_and_goes_on(
    tmp_path: Path,
) -> None:
    s0, s1 = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    successor: ClusterRoomStore | None = None
    try:
        await serving(s0, s1)
        b = await member(s1)
        await s1.join(ROOM0, b.id, 0)
        for n in range(1, 4):
            await s1.publish(ROOM0, said(n))
        epoch = s0.history.get(ROOM0).epoch  # type: ignore[union-attr]
        successor = await start_store(tmp_path, 0, generation=2)
        await serving(successor)
        await eventually(lambda: s0.links.superseded)
        ring = successor.history.get(ROOM0)
        assert ring is not None and (ring.epoch, ring.last_offset) == (epoch, 3)
        await s1.publish(ROOM0, said(4))  # positioned by the successor now
        await eventually(lambda: len(b.frames) == 4)
        assert offsets(b.frames) == [1, 2, 3, 4]
        assert successor.history.get(ROOM0).last_offset == 4  # type: ignore[union-attr]
        # The draining predecessor keeps a copy too.
        await eventually(lambda: s0.history.get(ROOM0).last_offset == 4)  # type: ignore[union-attr]
    finally:
        await close_all(*(store for store in (successor, s0, s1) if store is not None))


async def test_a_new_home_holds_history_asks_until_it_is_rebuilt(tmp_path: Path) -> None:
    store = ClusterRoomStore(0, 2, 1, tmp_path)  # not started: still starting
    store.use_history(lambda room: POLICY if room.startswith("h-") else None)
    a = await member(store)
    await store.attach(a)
    store._home.record(ROOM0, a.id, (0, 1, {}))
    store._local.join(ROOM0, a.id)
    store._home.record(PLAIN, a.id, (0, 1, {}))
    store._local.join(PLAIN, a.id)
    store.on_message(1, 1, Publish(ROOM0, [], said(1), 0, ":1.1.1"))
    store.on_message(1, 1, Publish(PLAIN, [], said(2), 0, ":1.1.2"))  # no history: at once
    assert payloads(a.frames) == [2]
    store.on_message(1, 1, Publish(ROOM0, [], said(3), 0, ":1.1.3"))
    store._serve_history()  # rebuilt: what waited goes on, in arrival order
    assert payloads(a.frames) == [2, 1, 3] and offsets(a.frames[1:]) == [1, 2]


async def test_broadcasts_flowing_through_a_handover_keep_one_run_of_positions(
    tmp_path: Path,
) -> None:
    s0, s1 = await asyncio.gather(start_store(tmp_path, 0), start_store(tmp_path, 1))
    successor: ClusterRoomStore | None = None
    try:
        await serving(s0, s1)
        b = await member(s1)
        await s1.join(ROOM0, b.id, 0)
        sent: list[int] = []
        before_handover = after_handover = 0

        async def flow(store: ClusterRoomStore, start: int) -> None:
            nonlocal before_handover, after_handover
            for n in range(start, start + 400, 2):
                await store.publish(ROOM0, said(n))
                sent.append(n)
                if s0.links.superseded:
                    after_handover += 1
                else:
                    before_handover += 1
                await asyncio.sleep(0.002)

        # From the other shard and from the predecessor itself (its own rooms' home).
        flowing = asyncio.gather(flow(s1, 0), flow(s0, 1))
        await asyncio.sleep(0.05)
        successor = await start_store(tmp_path, 0, generation=2)
        await flowing
        assert before_handover and after_handover  # the handover happened mid-flow
        await eventually(lambda: len(b.frames) == 400)
        assert offsets(b.frames) == list(range(1, 401))  # no offset twice, none skipped
        assert sorted(payloads(b.frames)) == sorted(sent)
    finally:
        await close_all(*(store for store in (successor, s0, s1) if store is not None))


class Unsent:
    """A link to the predecessor whose messages go nowhere (this test reads none)."""

    def __init__(self, peer: int, generation: int) -> None:
        self.peer, self.generation = peer, generation

    def send(self, message: object) -> bool:
        return False

    def flush(self) -> None:
        return None


async def test_a_successor_positions_only_once_its_predecessor_says_it_stopped(
    tmp_path: Path,
) -> None:
    successor = ClusterRoomStore(0, 2, 2, tmp_path)  # not started: its links are set by hand
    successor.use_history(lambda room: POLICY if room.startswith("h-") else None)
    a = await member(successor)
    successor._home.record(ROOM0, a.id, (0, 2, {}))
    successor._local.join(ROOM0, a.id)
    successor.links._instances[(0, 1)] = Unsent(0, 1)  # type: ignore[assignment]
    successor.links._move_own_rooms(OwnRooms.HOME)  # it handed over
    # The predecessor's last message, positioned before it heard of the handover.
    seventh = with_position(said(7), room_json(ROOM0), Position("oldepoch", 7))
    successor.on_message(0, 1, Deliver(ROOM0, [], None, seventh, 0, "", 7, "oldepoch"))
    successor.on_message(1, 1, Publish(ROOM0, [], said(8), 0, ":1.1.8"))  # waits
    assert payloads(a.frames) == [7]
    successor.on_message(0, 1, Positioned(0, 1))
    assert payloads(a.frames) == [7, 8] and offsets(a.frames) == [7, 8]


def sync(room: str, epoch: str, offsets_kept: list[int], last: int) -> HistorySync:
    frames = [with_position(said(n), room_json(room), Position(epoch, n)) for n in offsets_kept]
    entries = [
        (n, len(frame), f"o{n}", [], 0.0)
        for n, frame in zip(offsets_kept, frames, strict=True)
    ]
    return HistorySync(room, epoch, last, entries, b"".join(frames))


async def test_history_syncs_rebuild_a_starting_home_and_replace_a_copy(tmp_path: Path) -> None:
    store = ClusterRoomStore(0, 2, 1, tmp_path)  # shard 0, still starting
    store.use_history(lambda room: POLICY if room.startswith("h-") else None)
    store.on_message(1, 1, sync(ROOM0, "deadhome", [3, 4], 4))  # a copy of our room
    store.on_message(1, 1, sync(ROOM0, "deadhome", [4, 5], 5))  # another instance's
    rebuilt = store.history.get(ROOM0)
    assert rebuilt is not None and rebuilt.position == Position("deadhome", 5)
    assert [entry.offset for entry in rebuilt] == [3, 4, 5]
    assert rebuilt.offset_of("o4") == 4
    # The ring of a room homed on the sender replaces our copy of it.
    store.on_message(1, 1, sync(ROOM1, "homering", [9], 9))
    store.on_message(1, 1, sync(ROOM1, "homering", [], 12))
    copy = store.history.get(ROOM1)
    assert copy is not None and (copy.position, len(copy)) == (Position("homering", 12), 0)
    # Once the home serves, its ring is the truth: a late sync changes nothing.
    store._serve_history()
    store.on_message(1, 1, sync(ROOM0, "deadhome", [6], 6))
    assert store.history.get(ROOM0).position == Position("deadhome", 5)  # type: ignore[union-attr]
