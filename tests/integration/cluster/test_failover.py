"""``kill -9`` of a shard under broadcast load (3 shards): survivors keep receiving, the shard
is replaced, its rooms work again within 2 seconds, new connections are accepted; while a
room's home is down its broadcasts take the fallback path; a shard that keeps dying is
restarted with growing delays."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from clusterkit import (
    RESTARTING,
    ClusterProcess,
    Pool,
    StartCluster,
    collect,
    is_running,
)

from socketspec.client import Client, ErrorReply
from socketspec.cluster.store import home_of

SHARDS = 3
VICTIM = 2  # the shard killed
STEADY_HOME = 0  # home of the room that stays up
SENDER_SHARD = 1  # a survivor that is not the steady room's home
COUNT = 250  # ticks in the stream
INTERVAL = 0.01
# Ticks that may be lost at the instant of the kill: published to the victim (the home of the
# orphaned room) after it died and before the sender saw its link close. Generous.
KILL_WINDOW = 25


def room_homed_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(10_000) if home_of(f"{prefix}-{i}", SHARDS) == shard)


async def join_until_served(client: Client, room: str, deadline: float) -> None:
    """Join ``room``, retrying while its home is down (a retryable error)."""
    while True:
        try:
            await client.call("join", {"room": room}, timeout=5)
            return
        except ErrorReply as exc:
            assert exc.payload.get("details", {}).get("retry") is True, exc.payload
            assert time.monotonic() < deadline, f"join to {room} still refused: {exc.payload}"
            await asyncio.sleep(0.02)


def gaps(numbers: list[int], count: int) -> list[list[int]]:
    """The runs of 0..count-1 missing from ``numbers``."""
    present = set(numbers)
    runs: list[list[int]] = []
    for n in range(count):
        if n not in present:
            if runs and runs[-1][-1] == n - 1:
                runs[-1].append(n)
            else:
                runs.append([n])
    return runs


class Stream:
    """A sender broadcasting numbered ``tick``s to rooms, and collectors of what members get."""

    def __init__(self, sender: Client, rooms: list[str], members: list[Client]) -> None:
        self.rooms = rooms
        self.ticks: dict[str, list[dict[str, Any]]] = {m.conn_id or "": [] for m in members}
        self._stop = asyncio.Event()
        self._collectors = [
            asyncio.create_task(collect(m, "tick", self.ticks[m.conn_id or ""], self._stop))
            for m in members
        ]
        self.sending = asyncio.create_task(
            sender.call(
                "stream", {"rooms": rooms, "count": COUNT, "interval": INTERVAL}, timeout=60
            )
        )

    def numbers(self, member: Client, room: str) -> list[int]:
        return [t["n"] for t in self.ticks[member.conn_id or ""] if t["room"] == room]

    async def wait_for(self, member: Client, room: str, count: int) -> int:
        """Wait until ``member`` got ``count`` ticks of ``room``; returns the highest n."""
        while len(self.numbers(member, room)) < count:
            assert not self.sending.done(), self.sending
            await asyncio.sleep(0.005)
        return max(self.numbers(member, room))

    async def finish(self) -> Any:
        result = await self.sending
        await asyncio.sleep(0.5)  # the last ticks are on their way
        self._stop.set()
        await asyncio.gather(*self._collectors)
        return result


def assert_only_the_kill_instant_is_lost(numbers: list[int], at_kill: int, where: str) -> None:
    """No duplicates, in order, and nothing missing but a few ticks right after ``at_kill``."""
    assert numbers == sorted(set(numbers)), f"{where}: duplicated or reordered ticks"
    missing = gaps(numbers, COUNT)
    assert len(missing) <= 1, f"{where}: lost ticks {missing} (the kill was at ~{at_kill})"
    for run in missing:
        assert at_kill - 2 < run[0] and run[-1] <= at_kill + KILL_WINDOW, (
            f"{where}: lost ticks {run} (the kill was at ~{at_kill})"
        )


async def test_kill_9_of_a_shard_under_broadcast_load(start_cluster: StartCluster) -> None:
    cluster: ClusterProcess = start_cluster("cluster_rooms_app:app", SHARDS)
    steady = room_homed_on(STEADY_HOME, "steady")  # homed on a survivor
    orphan = room_homed_on(VICTIM, "orphan")  # homed on the shard that dies
    revived = room_homed_on(VICTIM, "revived")  # first joined after the kill
    victim_pid = cluster.pids[VICTIM]

    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards({STEADY_HOME: 3, SENDER_SHARD: 4, VICTIM: 2})
        # Two members per shard in both rooms; two probers of the revived room on the
        # surviving shards; the sender.
        members = {shard: clients[:2] for shard, clients in placed.items()}
        prober_a, prober_b = placed[STEADY_HOME][2], placed[SENDER_SHARD][2]
        sender = placed[SENDER_SHARD][3]
        everyone = [m for clients in members.values() for m in clients]
        survivors = members[STEADY_HOME] + members[SENDER_SHARD]
        for room in (steady, orphan):
            await asyncio.gather(*(m.call("join", {"room": room}) for m in everyone))

        stream = Stream(sender, [steady, orphan], everyone)
        at_kill = await stream.wait_for(survivors[0], orphan, 40)
        os.kill(victim_pid, signal.SIGKILL)  # kill -9 the home of the orphaned room
        killed_at = time.monotonic()

        # Its rooms work again within 2 seconds: joins from two surviving shards, then a
        # broadcast from one reaches the other.
        await join_until_served(prober_a, revived, killed_at + 5)
        await join_until_served(prober_b, revived, killed_at + 5)
        await prober_a.call("say", {"room": revived, "sender": "probe", "n": 1})
        got = await prober_b.receive("said", timeout=5)
        assert got == {"room": revived, "sender": "probe", "n": 1}
        recovered_in = time.monotonic() - killed_at
        assert recovered_in <= 2.0, f"rooms of the killed shard served after {recovered_in:.2f}s"

        # The shard is replaced by a new process.
        new_pid = await cluster.wait_ready(VICTIM, [victim_pid], timeout=10)
        assert new_pid != victim_pid and is_running(new_pid)

        assert await stream.finish() == {"sent": COUNT, "shard": SENDER_SHARD}

        # The killed shard's own clients were dropped.
        for client in members[VICTIM]:
            await client.wait_closed(5)

        for member in survivors:
            where = f"member on shard {member.greeting['shard']}"
            # A room homed on a survivor loses nothing and duplicates nothing.
            at_steady = stream.numbers(member, steady)
            assert at_steady == list(range(COUNT)), (where, gaps(at_steady, COUNT))
            # The orphaned room: the ticks sent while its home was down came through the
            # fallback path, those after the replacement through the new home.
            assert_only_the_kill_instant_is_lost(stream.numbers(member, orphan), at_kill, where)

        # The orphaned room was rebuilt from the survivors' memberships.
        listed = await prober_a.call("members", {"room": orphan})
        assert {entry["id"] for entry in listed} == {m.conn_id for m in survivors}

    # New connections are accepted, and some land on the replacement.
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards([VICTIM], per_shard=2)
        for client in placed[VICTIM]:
            assert (await client.call("whoami"))["shard"] == VICTIM


async def test_while_a_home_is_down_broadcasts_take_the_fallback_path(
    start_cluster: StartCluster,
) -> None:
    """The supervisor is held (SIGSTOP) so the killed home stays down for a while: survivors
    keep receiving the room's broadcasts from the sender directly, joins to its rooms fail
    with a retryable error and new connections are served; once the replacement is up the
    room is whole again and its ticks flow through the new home without a gap."""
    cluster = start_cluster("cluster_rooms_app:app", SHARDS)
    orphan = room_homed_on(VICTIM, "downtime")
    revived = room_homed_on(VICTIM, "later")
    victim_pid = cluster.pids[VICTIM]

    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards({STEADY_HOME: 3, SENDER_SHARD: 3, VICTIM: 2})
        members = {shard: clients[:2] for shard, clients in placed.items()}
        prober, sender = placed[STEADY_HOME][2], placed[SENDER_SHARD][2]
        everyone = [m for clients in members.values() for m in clients]
        survivors = members[STEADY_HOME] + members[SENDER_SHARD]
        await asyncio.gather(*(m.call("join", {"room": orphan}) for m in everyone))

        stream = Stream(sender, [orphan], everyone)
        at_kill = await stream.wait_for(survivors[0], orphan, 30)
        os.kill(cluster.proc.pid, signal.SIGSTOP)
        try:
            os.kill(victim_pid, signal.SIGKILL)
            await asyncio.sleep(0.1)
            # Down: joins to a room homed there fail, retryably, for as long as it is down.
            for _ in range(5):
                try:
                    await prober.call("join", {"room": revived}, timeout=5)
                    raise AssertionError("joined a room whose home shard is down")
                except ErrorReply as exc:
                    assert exc.payload["details"].get("retry") is True, exc.payload
                await asyncio.sleep(0.05)
            # New connections are served by the surviving shards.
            extra = [await pool.open() for _ in range(6)]
            assert {c.greeting["shard"] for c in extra} <= {STEADY_HOME, SENDER_SHARD}
            downtime_from = max(stream.numbers(survivors[0], orphan))
            await asyncio.sleep(0.5)
            downtime_to = max(stream.numbers(survivors[0], orphan))
            assert downtime_to - downtime_from >= 20, "survivors stopped receiving the room"
            assert not stream.sending.done()
        finally:
            os.kill(cluster.proc.pid, signal.SIGCONT)
        continued_at = time.monotonic()
        new_pid = await cluster.wait_ready(VICTIM, [victim_pid], timeout=10)
        await join_until_served(prober, revived, continued_at + 2)
        assert is_running(new_pid)

        assert await stream.finish() == {"sent": COUNT, "shard": SENDER_SHARD}
        assert downtime_to < COUNT - 40, "the stream ended before the replacement was up"
        for member in survivors:
            where = f"member on shard {member.greeting['shard']}"
            assert_only_the_kill_instant_is_lost(stream.numbers(member, orphan), at_kill, where)
        listed = await prober.call("members", {"room": orphan})
        assert {entry["id"] for entry in listed} == {m.conn_id for m in survivors}


async def test_a_shard_that_keeps_dying_is_restarted_with_growing_delays(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_rooms_app:app", 2)
    pids = [cluster.pids[1]]
    for _ in range(3):
        os.kill(pids[-1], signal.SIGKILL)
        pids.append(await cluster.wait_ready(1, pids, timeout=15))
    delays = []
    for line in cluster.stderr_text().splitlines():
        found = RESTARTING.search(line)
        if found:
            assert int(found.group(1)) == 1 and int(found.group(3)) == -signal.SIGKILL, line
            delays.append(float(found.group(4)))
    assert len(delays) == 3, cluster.stderr_text()
    assert delays[0] < delays[1] < delays[2], delays
    # The other shard was left alone, and the cluster serves on both.
    assert is_running(cluster.pids[0])
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards([0, 1])
        for shard, (client,) in placed.items():
            assert (await client.call("whoami"))["shard"] == shard


def test_stream_helpers_find_gaps() -> None:
    assert gaps([0, 1, 3, 4, 7], 9) == [[2], [5, 6], [8]]
    assert_only_the_kill_instant_is_lost([n for n in range(COUNT) if n not in (3, 4)], 2, "x")
    with pytest.raises(AssertionError):  # a second gap
        assert_only_the_kill_instant_is_lost([n for n in range(COUNT) if n not in (3, 9)], 2, "x")
    with pytest.raises(AssertionError):  # a gap long after the kill
        assert_only_the_kill_instant_is_lost([n for n in range(COUNT) if n != 100], 2, "x")
    with pytest.raises(AssertionError):  # a duplicate
        assert_only_the_kill_instant_is_lost([*range(COUNT), COUNT - 1], 2, "x")
