"""Connection-state recovery across nodes: two nodes of 2 shards sharing a real
``redis-server``, clients in rooms with history under a steady broadcast load, and one node
killed with ``kill -9`` (its whole process tree). Its clients, behind a balancer that sends
new connections to the node still up, reconnect with ``socketspec.client`` and recover:
the same connection id and rooms, and every message of their rooms exactly once, in
position order, contiguous within the room's one epoch, every acked publish among them.

One room has members on the killed node only: the surviving node's home has kept none of
its messages in memory, so their recovery is served from the room's Redis stream. Another
is first sent to after the kill: its members had received nothing of it when their node
died, and recover from the position their join was given. The secret is left to the
cluster: the nodes agree on one through Redis, or no token of the killed node would be
accepted on the other.

Also: senders on both nodes at once give every member one order of a history room; and
while Redis is out of reach (its connections cut through a balancer, its data kept) a node
positions a history room's messages in an epoch of its own, so that no position ever names
two messages once Redis is back. tests/integration/recovery/test_fault_recovery_nodes.py
runs the recovery fault scenario over two nodes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from clusterkit import Balancer, Node, Pool, RedisServer, node_of, start_nodes

from socketspec.client import Client, Reconnect, connect
from socketspec.history import Position

APP = "cluster_recovery_app:app"  # apps/cluster_recovery_app.py: every room keeps history
SHARDS = 2
SHARED_ROOMS = ["hist-a", "hist-b", "hist-c"]  # members on both nodes
KILLED_ONLY_ROOM = "hist-killed-only"  # members on the killed node only
AFTER_KILL_ROOM = "hist-after-kill"  # sent to only once the node was killed
ROOMS = [*SHARED_ROOMS, KILLED_ONLY_ROOM, AFTER_KILL_ROOM]
CLIENTS_PER_NODE = 12
PUBLISHERS = 3  # on the surviving node, each publishing to every room in turn
PUBLISH_INTERVAL = 0.01


def said(client: Client) -> list[dict[str, Any]]:
    """Every ``said`` message the client got, in arrival order (the whole envelope: its
    room and position too)."""
    return [m for m in client.inbox.pending() if m.get("event") == "said"]


def sequence(client: Client) -> list[tuple[str, str, int]]:
    """Position, publisher and seq of every ``said`` the client got, in arrival order."""
    return [(m["pos"], m["payload"]["publisher"], m["payload"]["seq"]) for m in said(client)]


@pytest.fixture
def redis_server(tmp_path: Any) -> Any:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def two_nodes(redis_server: RedisServer) -> Any:
    nodes = start_nodes(2, APP, SHARDS, "--redis", redis_server.url, "--redis-node-ttl", "2")
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


async def test_members_on_both_nodes_see_one_order_of_a_history_room(
    two_nodes: list[Node],
) -> None:
    """Senders on both nodes at once: every member, on both shards of both nodes, gets the
    room's messages in one order, positioned 1, 2, 3... in one epoch, each sender's in its
    own order."""
    a, b = two_nodes
    room = "hist-one-order"
    count = 60
    async with asyncio.timeout(60):
        async with Pool(a.url()) as pool_a, Pool(b.url()) as pool_b:
            on_a = await pool_a.on_shards(range(SHARDS), 2)
            on_b = await pool_b.on_shards(range(SHARDS), 2)
            members = [c for p in (on_a, on_b) for clients in p.values() for c in clients]
            for member in members:
                await member.call("join", {"room": room}, timeout=15)

            async def send(sender: Client, name: str) -> None:
                for seq in range(count):
                    await sender.call(
                        "publish", {"room": room, "publisher": name, "seq": seq}, timeout=15
                    )

            await asyncio.gather(send(on_a[0][0], "from-a"), send(on_b[1][0], "from-b"))
            for member in members:
                await _wait_for(lambda m=member: len(said(m)) >= 2 * count, 20, "all arrived")
            await asyncio.sleep(0.3)
            reference = sequence(members[0])
            positions = [Position.parse(pos) for pos, _, _ in reference]
            assert len({p.epoch for p in positions}) == 1
            assert [p.offset for p in positions] == list(range(1, 2 * count + 1))
            for name in ("from-a", "from-b"):
                assert [seq for _, who, seq in reference if who == name] == list(range(count))
            for member in members[1:]:
                assert sequence(member) == reference, f"{member.conn_id} saw another order"


async def test_the_killed_nodes_clients_recover_every_message_on_the_other_node(
    two_nodes: list[Node],
) -> None:
    doomed, survivor = two_nodes
    balancer = Balancer([doomed.process.port, survivor.process.port])
    await balancer.start()
    reconnect = Reconnect(initial=0.1, maximum=1.0, jitter=0.5)
    clients: list[Client] = []
    rooms_of: dict[str, list[str]] = {}
    rng = random.Random(16)
    try:
        async with asyncio.timeout(120):
            path = doomed.process.path
            behind_balancer = f"ws://127.0.0.1:{balancer.port}{path}"
            for index in range(2 * CLIENTS_PER_NODE):
                on_doomed = index < CLIENTS_PER_NODE
                url = behind_balancer if on_doomed else survivor.url()
                client = await connect(url, reconnect=reconnect, open_timeout=10)
                clients.append(client)
                assert client.conn_id is not None
                expected_node = doomed if on_doomed else survivor
                assert node_of(client.conn_id) == expected_node.node_id
                rooms = rng.sample(SHARED_ROOMS, 2)
                if on_doomed and index % 2 == 0:
                    rooms.append(KILLED_ONLY_ROOM)
                if index % 3 == 0:
                    rooms.append(AFTER_KILL_ROOM)
                rooms_of[client.conn_id] = rooms
                for room in rooms:
                    await client.call("join", {"room": room}, timeout=15)
            publishers = [await connect(survivor.url(), open_timeout=10) for _ in range(PUBLISHERS)]
            acked: dict[str, set[tuple[str, int]]] = {room: set() for room in ROOMS}
            stop = asyncio.Event()
            killed = asyncio.Event()

            async def publish(index: int) -> None:
                publisher = publishers[index]
                seq = 0
                while not stop.is_set():
                    room = ROOMS[seq % len(ROOMS)]
                    if room == AFTER_KILL_ROOM and not killed.is_set():
                        seq += 1
                        continue
                    name = f"p{index}"
                    await publisher.call(
                        "publish", {"room": room, "publisher": name, "seq": seq}, timeout=15
                    )
                    acked[room].add((name, seq))
                    seq += 1
                    await asyncio.sleep(PUBLISH_INTERVAL)

            load = [asyncio.ensure_future(publish(i)) for i in range(PUBLISHERS)]
            await asyncio.sleep(2.0)
            before_kill = {c.conn_id: c.room_counts.copy() for c in clients}
            doomed.kill()  # SIGKILL of the supervisor and every shard of its session
            killed.set()
            # Its clients reconnect through the balancer to the survivor and recover.
            for client in clients[:CLIENTS_PER_NODE]:
                await _wait_for(
                    lambda c=client: c.reconnects >= 1 and c.state.value == "open",
                    30,
                    f"{client.conn_id} reconnected",
                )
            await asyncio.sleep(2.0)
            stop.set()
            await asyncio.gather(*load)
            total = {room: len(acked[room]) for room in ROOMS}
            # Everything published reaches everyone (the last messages may still be on the
            # way); what is missing after that is told by the checks below.
            for client in clients:
                for room in rooms_of[str(client.conn_id)]:
                    with contextlib.suppress(AssertionError):
                        await _wait_for(
                            lambda c=client, r=room: c.room_counts[r] >= total[r], 20, ""
                        )
            await asyncio.sleep(0.5)  # and nothing more arrives: no copy

            for index, client in enumerate(clients):
                conn_id = str(client.conn_id)
                if index < CLIENTS_PER_NODE:
                    assert client.recovered, f"{conn_id} did not recover: {client.missed}"
                    assert node_of(conn_id) == doomed.node_id  # the same id, on the survivor
                    assert client.reconnects >= 1 and client.missed == {}
                for room in rooms_of[conn_id]:
                    messages = [m for m in said(client) if m.get("room") == room]
                    positions = [Position.parse(m["pos"]) for m in messages]
                    assert len({p.epoch for p in positions}) == 1, f"{room}: several epochs"
                    offsets = [p.offset for p in positions]
                    assert offsets == list(range(1, total[room] + 1)), (
                        f"{conn_id} in {room} ({len(offsets)} of {total[room]}, "
                        f"{before_kill[conn_id][room]} before the kill): not every message "
                        f"once in position order: {_gaps(offsets)}\n"
                        + survivor.process.stderr_text()[-3000:]
                    )
                    got = Counter(
                        (m["payload"]["publisher"], m["payload"]["seq"]) for m in messages
                    )
                    assert set(got) == acked[room], f"{conn_id} in {room}: acked publishes missing"
                    assert max(got.values()) == 1, f"{conn_id} in {room}: a publish twice"
                    assert len(messages) == total[room]
                    # Something of the room was indeed missed while the node was down.
                    if index < CLIENTS_PER_NODE:
                        assert before_kill[conn_id][room] < total[room]
                    if room == AFTER_KILL_ROOM:
                        assert before_kill[conn_id][room] == 0
            # The survivor counted the recoveries and what it replayed; the room it had no
            # member in was replayed from its stream.
            await survivor.wait_metric(
                "socketspec_recoveries_total",
                lambda v: v == CLIENTS_PER_NODE,
                outcome="recovered",
            )
            assert await survivor.metric("socketspec_recoveries_total", outcome="gap") == 0
            await survivor.wait_metric(
                "socketspec_recovery_replayed_messages_total", lambda v: v > 0
            )
            async with aioredis.Redis.from_url(survivor.redis_url) as redis_client:
                stats = await redis_client.info("commandstats")
            assert stats.get("cmdstat_xrevrange", {}).get("calls", 0) > 0
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        await balancer.close()


async def _wait_for(check: Any, timeout: float, what: str | Callable[[], str]) -> None:
    """Until ``check()`` holds; fails after ``timeout`` saying ``what`` (or what it returns
    then)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            said_what = what if isinstance(what, str) else what()
            raise AssertionError(f"not within {timeout:g}s: {said_what}")
        await asyncio.sleep(0.05)


def _gaps(offsets: list[int]) -> str:
    seen = Counter(offsets)
    twice = sorted(o for o, n in seen.items() if n > 1)
    top = max(offsets, default=0)
    missing = sorted(set(range(1, top + 1)) - set(seen))
    if missing:
        # Where the run breaks: the offsets received around the first hole.
        at = offsets.index(missing[0] - 1) if missing[0] - 1 in seen else 0
        around = offsets[max(0, at - 3) : at + 4]
        return f"missing {missing[:10]} (of {len(missing)}) after {around}"
    disorder = sum(1 for a, b in itertools.pairwise(offsets) if b < a)
    return f"twice {twice[:10]}, missing {missing[:10]}, {disorder} out of order"


async def test_while_redis_is_unreachable_a_node_positions_in_an_epoch_of_its_own(
    redis_server: RedisServer,
) -> None:
    """Redis out of reach (its connections cut, its data kept): the node positions a history
    room's messages alone, in a new epoch, so that when Redis is back and goes on with its
    own offsets no position ever names two messages."""
    cut = Balancer([redis_server.port])
    await cut.start()
    nodes = start_nodes(
        2, APP, SHARDS, "--redis", f"redis://127.0.0.1:{cut.port}/0", "--redis-node-ttl", "2"
    )
    a, b = nodes
    room = "hist-redis-cut"

    async def redis_up_everywhere(value: int) -> None:
        """Every shard of both nodes says so (the gauges reach /metrics within a second
        or so: waiting for the change itself, not a value left from before)."""
        for node in nodes:
            for shard in range(SHARDS):
                await node.wait_metric(
                    "socketspec_redis_up", lambda v: v == value, 20, shard=str(shard)
                )

    try:
        async with asyncio.timeout(90):
            await redis_up_everywhere(1)
            async with Pool(a.url()) as pool_a, Pool(b.url()) as pool_b:
                members = [c for clients in (await pool_a.on_shards(range(SHARDS))).values()
                           for c in clients]
                on_b = await pool_b.open()
                for member in [*members, on_b]:
                    await member.call("join", {"room": room}, timeout=15)
                sender = members[0]

                async def publish(seq: int) -> None:
                    await sender.call(
                        "publish", {"room": room, "publisher": "a", "seq": seq}, timeout=15
                    )

                async def until_all_have(count: int) -> None:
                    await _wait_for(
                        lambda: all(len(said(m)) >= count for m in members),
                        15,
                        lambda: f"{count} sent: {[sequence(m) for m in members]}\n"
                        + a.process.stderr_text()[-3000:],
                    )

                for seq in range(3):
                    await publish(seq)
                await until_all_have(3)
                shared_epoch = Position.parse(said(members[0])[0]["pos"]).epoch

                await cut.close()
                await redis_up_everywhere(0)
                for seq in range(3, 5):
                    await publish(seq)
                await until_all_have(5)

                await cut.start()
                await redis_up_everywhere(1)  # up: the subscriptions renewed, confirmed
                await publish(5)
                await until_all_have(6)
                await _wait_for(lambda: len(said(on_b)) >= 4, 10, "B's member has 4")

                for member in [*members, on_b]:
                    seen = sequence(member)
                    by_position = {pos: seq for pos, _, seq in seen}
                    assert len(by_position) == len(seen), f"a position named twice: {seen}"
                positions = [Position.parse(pos) for pos, _, _ in sequence(members[0])]
                alone = positions[3].epoch
                assert alone != shared_epoch
                assert positions == [
                    Position(shared_epoch, 1),
                    Position(shared_epoch, 2),
                    Position(shared_epoch, 3),
                    Position(alone, 1),
                    Position(alone, 2),
                    Position(shared_epoch, 4),  # Redis goes on where it was
                ]
                # The other node never got what was positioned alone, and nothing twice.
                assert [seq for _, _, seq in sequence(on_b)] == [0, 1, 2, 5]
    finally:
        for node in nodes:
            node.kill()
        await cut.close()
