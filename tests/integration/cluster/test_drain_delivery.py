"""A connection told ``__server_shutdown__`` keeps receiving its rooms' messages until its
close frame is sent, over a real cluster: through a SIGHUP rolling restart (old and new
shards side by side, on one node and with a second node sharing rooms through Redis) and
through a SIGTERM drain (shards finishing at different times)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clusterkit import ClusterProcess, Pool, RedisServer, StartCluster, is_running, start_nodes

from socketspec.client import Client
from socketspec.cluster.store import home_of

SHARDS = 2
# A broadcast acknowledged this close to a member's close may still be on its way between
# shards when the member's own shard sends the close frame: not counted as owed.
IN_FLIGHT = 0.2


def rooms_homed_on_each_shard(prefix: str) -> list[str]:
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(home_of(f"{prefix}-{i}", SHARDS), f"{prefix}-{i}")
        if len(found) == SHARDS:
            break
    return [found[shard] for shard in range(SHARDS)]


@dataclass
class Member:
    """What one member saw: its messages with their arrival times, the notice, the close."""

    client: Client
    said: list[tuple[float, tuple[str, str, int]]] = field(default_factory=list)
    notice_at: float | None = None
    closed_at: float | None = None

    async def watch(self) -> None:
        inbox = self.client.inbox
        while True:
            try:
                message = await inbox.take(lambda m: True, 60, "any message")
            except Exception:  # closed: everything before the close frame has been read
                self.closed_at = time.monotonic()
                return
            event = message.get("event")
            if event == "__server_shutdown__":
                self.notice_at = time.monotonic()
            elif event in ("said", "tick"):
                p = message["payload"]
                key = (p["room"], str(p.get("sender", "stream")), int(p["n"]))
                self.said.append((time.monotonic(), key))

    def received(self) -> set[tuple[str, str, int]]:
        return {key for _, key in self.said}


async def join_all(members: list[Member], rooms: list[str]) -> None:
    for member in members:
        for room in rooms:
            await member.client.call("join", {"room": room}, timeout=10)


def owed(member: Member, acked: list[tuple[float, tuple[str, str, int]]]) -> set[Any]:
    """The broadcasts acknowledged to a sender between the member's notice and its close."""
    assert member.notice_at is not None and member.closed_at is not None
    return {key for at, key in acked if member.notice_at <= at <= member.closed_at - IN_FLIGHT}


async def sender(
    cluster: ClusterProcess,
    name: str,
    rooms: list[str],
    acked: list[tuple[float, tuple[str, str, int]]],
    stop: asyncio.Event,
) -> None:
    """``say`` to every room in turn, each acknowledged; when its connection is drained,
    a new one carries on (a reload moves every client)."""
    n = 0
    while not stop.is_set():
        async with Pool(cluster.url(), token=True, users=name) as pool:
            try:
                client = await pool.open()
                while not stop.is_set():
                    for room in rooms:
                        await client.call("say", {"room": room, "sender": name, "n": n}, timeout=10)
                        acked.append((time.monotonic(), (room, name, n)))
                        n += 1
                    await asyncio.sleep(0.005)
            except Exception:  # drained or refused: reconnect
                await asyncio.sleep(0.02)


async def open_on_instance(pool: Pool, shard_pid: int) -> Client:
    """A connection served by the process ``shard_pid`` (one instance of a shard)."""
    for _ in range(200):
        client = await pool.open()
        if await client.call("pid", timeout=10) == shard_pid:
            return client
        await pool.discard(client)
    raise AssertionError(f"200 connections, none on pid {shard_pid}")


def gap_free(member: Member, room: str, end: int, since: float = 0.0) -> list[int]:
    """The ``tick`` numbers ``member`` got in ``room`` (those that arrived from ``since`` on),
    asserted to run without a gap."""
    ns = sorted(
        key[2] for at, key in member.said if key[0] == room and key[1] == "stream" and at >= since
    )
    gaps = sorted(set(range(ns[0], ns[-1])) - set(ns)) if ns else []
    assert not gaps, (
        f"shard {member.client.greeting['shard']} missed ticks {gaps} of {room} "
        f"(home {home_of(room, SHARDS)}), got {ns[0]}..{ns[-1]}"
    )
    assert not ns or ns[-1] < end
    return ns


async def test_a_sighup_reload_loses_no_broadcast_to_members_being_drained(
    start_cluster: StartCluster,
) -> None:
    """Old and new instances of each shard serve side by side: the old one's members, told
    to move, still get every broadcast (from old and new instances) until their close; the
    new one's members get the broadcasts the old instances still send."""
    cluster = start_cluster("cluster_rooms_app:app", SHARDS, "--graceful-timeout", "10")
    old_pids = list(cluster.pids)
    rooms = rooms_homed_on_each_shard("reload-drain")
    acked: list[tuple[float, tuple[str, str, int]]] = []
    stop = asyncio.Event()
    ticks = 100
    async with Pool(cluster.url(), token=True, users="member") as pool:
        placed = await pool.on_shards(range(SHARDS), per_shard=2)
        members = [Member(c) for clients in placed.values() for c in clients]
        await join_all(members, rooms)
        # Handlers running through the drain keep the old instances' members open (and in
        # their rooms) after the notice: a stream of ticks on shard 0 (3 s), a sleep on 1.
        await placed[0][0].emit(
            "stream", {"rooms": rooms, "count": ticks, "interval": 0.03}, ack="stream"
        )
        await placed[1][0].emit("slow", {"seconds": 2.5}, ack="slow")
        watchers = [asyncio.create_task(m.watch()) for m in members]
        senders = [
            asyncio.create_task(sender(cluster, f"s{i}", rooms, acked, stop)) for i in range(2)
        ]
        await asyncio.sleep(0.3)
        cluster.send(signal.SIGHUP)
        # While the old shard 0 drains, a member and a sender on its successor.
        new_0 = await cluster.wait_ready(0, old_pids, timeout=20)
        async with Pool(cluster.url(), token=True, users="fresh") as fresh_pool:
            fresh = Member(await open_on_instance(fresh_pool, new_0))
            await join_all([fresh], rooms)
            joined_at = time.monotonic()
            fresh_watch = asyncio.create_task(fresh.watch())
            on_new = await open_on_instance(fresh_pool, new_0)
            n = 0
            while is_running(old_pids[0]):
                for room in rooms:
                    await on_new.call("say", {"room": room, "sender": "new", "n": n})
                    acked.append((time.monotonic(), (room, "new", n)))
                    n += 1
            deadline = time.monotonic() + 40
            while any(is_running(pid) for pid in old_pids):
                assert time.monotonic() < deadline, "the old shards did not stop"
                await asyncio.sleep(0.05)
            await asyncio.gather(*watchers)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*senders)
            await fresh_pool.close_all()
            await fresh_watch
    for member in members:
        assert member.notice_at is not None, "a member was closed without the notice"
        assert member.closed_at is not None and member.closed_at - member.notice_at > 0.5
        due = owed(member, acked)
        assert {key[1] for key in due} >= {"new"}, "no broadcast from a new instance to tell"
        missing = due - member.received()
        assert not missing, (
            f"shard {member.client.greeting['shard']}: {len(missing)} of {len(due)} lost: "
            f"{sorted(missing)[:5]} (homes {[home_of(r, SHARDS) for r in rooms]})"
        )
        for room in rooms:
            gap_free(member, room, ticks)
    for room in rooms:  # shard 0's old instance held its members until the stream ended
        for member in members[:2]:
            assert gap_free(member, room, ticks)[-1] == ticks - 1
        # the new instance's member got every tick sent after it joined (a tick on its way
        # while the join was being acknowledged may or may not reach it)
        got = gap_free(fresh, room, ticks, since=joined_at + IN_FLIGHT)
        assert got and got[-1] == ticks - 1, got
    due = {key for at, key in acked if joined_at + IN_FLIGHT <= at}
    missing = due - fresh.received()
    assert not missing, f"{len(missing)} of {len(due)} lost: {sorted(missing)[:5]}"
    assert "Traceback" not in cluster.stderr_text()


async def test_a_sigterm_drain_loses_no_broadcast_while_other_shards_finish_first(
    start_cluster: StartCluster,
) -> None:
    """Shard 1 has nothing running and closes its members at once, then exits; on shard 0 a
    handler broadcasts through the drain to rooms homed on both shards: shard 0's members
    get every tick, whether the room's home is alive or already gone."""
    cluster = start_cluster("cluster_rooms_app:app", SHARDS, "--graceful-timeout", "10")
    rooms = rooms_homed_on_each_shard("term-drain")
    async with Pool(cluster.url(), token=True, users="member") as pool:
        placed = await pool.on_shards(range(SHARDS), per_shard=2)
        members = [Member(c) for clients in placed.values() for c in clients]
        await join_all(members, rooms)
        watchers = [asyncio.create_task(m.watch()) for m in members]
        count = 60
        streamer = placed[0][0]
        await streamer.emit(
            "stream", {"rooms": rooms, "count": count, "interval": 0.02}, ack="stream"
        )
        await asyncio.sleep(0.2)
        cluster.send(signal.SIGTERM)
        await asyncio.gather(*watchers)
        assert await cluster.wait_exit(30) == 0
    for member in members:
        assert member.notice_at is not None and member.closed_at is not None
    on_0 = [m for m in members if m.client.greeting["shard"] == 0]
    every_tick = {(room, "stream", n) for room in rooms for n in range(count)}
    for member in on_0:  # open until the stream handler ended
        missing = every_tick - member.received()
        assert not missing, f"{len(missing)} ticks lost: {sorted(missing)[:5]}"
    for member in members:  # whatever a member got, it got without a gap
        for room in rooms:
            ns = sorted(n for r, _, n in member.received() if r == room)
            assert ns == list(range(len(ns))), (room, ns[:10])
    assert "Traceback" not in cluster.stderr_text()


HANDOVER = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*shard \d+ \(generation \d+\) is the home"
)
# Redis pub/sub has no message ids: a message published at the instant a shard's new
# instance takes over from its predecessor may be fanned out by both or by neither.
HANDOVER_INSTANT = 0.25


def handovers(stderr: str) -> list[float]:
    """When each instance became the home of its rooms (time.monotonic() of this process)."""
    offset = time.time() - time.monotonic()
    return [
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - offset
        for m in (HANDOVER.match(line) for line in stderr.splitlines())
        if m
    ]


async def test_a_sighup_reload_of_one_node_loses_and_doubles_no_broadcast_from_another(
    tmp_path: Path,
) -> None:
    """Two nodes sharing a real Redis; node B reloads while a sender on node A broadcasts:
    B's draining members get every broadcast owed to them, B's new instances' members every
    broadcast after their join, each exactly once (one instance of a shard fans out the
    node's share at a time), but at the instant of a handover."""
    redis = RedisServer(tmp_path)
    redis.start()
    nodes = start_nodes(
        2, "cluster_rooms_app:app", SHARDS, "--redis", redis.url, "--graceful-timeout", "10"
    )
    try:
        node_a, node_b = nodes
        old_pids = list(node_b.process.pids)
        rooms = rooms_homed_on_each_shard("nodes-drain")
        acked: list[tuple[float, tuple[str, str, int]]] = []
        stop = asyncio.Event()
        async with Pool(node_b.url(), token=True, users="member") as pool:
            placed = await pool.on_shards(range(SHARDS), per_shard=2)
            members = [Member(c) for clients in placed.values() for c in clients]
            await join_all(members, rooms)
            for clients in placed.values():  # keep the old instances draining a while
                await clients[0].emit("slow", {"seconds": 2.0}, ack="slow")
            watchers = [asyncio.create_task(m.watch()) for m in members]
            sending = asyncio.create_task(sender(node_a.process, "a", rooms, acked, stop))
            await asyncio.sleep(0.3)
            node_b.process.send(signal.SIGHUP)
            new_0 = await node_b.process.wait_ready(0, old_pids, timeout=20)
            async with Pool(node_b.url(), token=True, users="fresh") as fresh_pool:
                fresh = Member(await open_on_instance(fresh_pool, new_0))
                await join_all([fresh], rooms)
                joined_at = time.monotonic()
                fresh_watch = asyncio.create_task(fresh.watch())
                deadline = time.monotonic() + 40
                while any(is_running(pid) for pid in old_pids):
                    assert time.monotonic() < deadline, "the old shards did not stop"
                    await asyncio.sleep(0.05)
                await asyncio.gather(*watchers)
                await asyncio.sleep(0.5)
                stop.set()
                await sending
                await asyncio.sleep(0.5)  # the last broadcasts reach node B
                await fresh_pool.close_all()
                await fresh_watch
        switched = handovers(node_b.process.stderr_text())
        assert len(switched) >= 2 * SHARDS  # the first boot's instances, then the new ones
        at = {key: when for when, key in acked}

        def steady(key: tuple[str, str, int]) -> bool:
            return all(abs(at[key] - when) > HANDOVER_INSTANT for when in switched)

        acked = [(when, key) for when, key in acked if steady(key)]
        for member in [*members, fresh]:
            keys = [key for _, key in member.said if key in at and steady(key)]
            assert len(keys) == len(set(keys)), "a broadcast arrived twice"
        for member in members:
            assert member.notice_at is not None and member.closed_at is not None
            due = owed(member, acked)
            assert len(due) > 20, f"too few broadcasts during the drain to tell: {len(due)}"
            missing = due - member.received()
            assert not missing, (
                f"shard {member.client.greeting['shard']}: {len(missing)} of {len(due)} lost: "
                f"{sorted(missing)[:5]} (homes {[home_of(r, SHARDS) for r in rooms]})"
            )
        due = {key for at, key in acked if joined_at + IN_FLIGHT <= at}
        missing = due - fresh.received()
        assert not missing, f"{len(missing)} of {len(due)} lost: {sorted(missing)[:5]}"
        assert "Traceback" not in node_b.process.stderr_text()
    finally:
        for node in nodes:
            node.kill()
        redis.kill()
