"""Several nodes (``socketspec-cluster`` processes) sharing rooms through a real ``redis-server``:
room broadcasts, direct emits, kicks, ``members`` and ``max_members`` across nodes; a node
killed with ``kill -9`` stops counting once its liveness key expires; Redis stopped and started
again (empty) while the nodes serve; and ``SocketApp(backend=RedisBackend(url))`` without
``--redis``.

The tests that only read share one Redis and two nodes of 2 shards each (one module fixture,
their own room names); the destructive ones start their own Redis and nodes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from clusterkit import Node, Pool, RedisServer, node_of, receive_n, start_nodes

from socketspec.client import Client, ErrorReply
from socketspec.cluster.store import home_of

ROOMS_APP = "cluster_rooms_app:app"  # apps/cluster_rooms_app.py: "capped" has max_members=5
BACKEND_APP = "cluster_redis_backend_app:app"  # apps/cluster_redis_backend_app.py
SHARDS = 2
SHARED_TTL = "5"  # the shared nodes never wait for an expiry; keep them well clear of one
TTL = 2  # seconds, for the tests that wait for a dead node to expire
REDIS_CONNECTED = re.compile(
    r"socketspec\.redis: Redis at \S+: node [0-9a-f]+ shard (\d+) connected"
)
StartNodes = Callable[..., list[Node]]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def nodes(shared_redis: RedisServer) -> Iterator[list[Node]]:
    """Two nodes of 2 shards each on the shared Redis, for the tests that leave them whole."""
    started = start_nodes(
        2, ROOMS_APP, SHARDS, "--redis", shared_redis.url, "--redis-node-ttl", SHARED_TTL
    )
    try:
        yield started
    finally:
        for node in started:
            node.kill()


@pytest.fixture
def redis_server(tmp_path: Any) -> Iterator[RedisServer]:
    """A Redis of the test's own, killed at its end."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def node_factory() -> Iterator[StartNodes]:
    """``node_factory(count, APP, workers, *flags, env=...)`` → announced nodes, every process
    of each SIGKILLed at the end of the test."""
    started: list[Node] = []

    def start(count: int, app: str, workers: int, *extra: str, **kwargs: Any) -> list[Node]:
        found = start_nodes(count, app, workers, *extra, **kwargs)
        started.extend(found)
        return found

    yield start
    for node in started:
        node.kill()


# -- helpers ---------------------------------------------------------------------------------------


def flat(placed: dict[int, list[Client]]) -> list[Client]:
    return [client for clients in placed.values() for client in clients]


def ids(clients: list[Client]) -> set[str]:
    return {str(client.conn_id) for client in clients}


def where(client: Client) -> str:
    return f"client on node {node_of(str(client.conn_id))} shard {client.greeting.get('shard')}"


async def listed_ids(client: Client, room: str) -> set[str]:
    return {entry["id"] for entry in await client.call("members", {"room": room}, timeout=10)}


async def eventually(
    probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5, what: str = ""
) -> float:
    """``await probe()`` until it returns ``expected``; the seconds it took. Fails with the
    last value after ``timeout``."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (value := await probe()) != expected:
        if loop.time() - started > timeout:
            raise AssertionError(
                f"{what}: after {timeout:g}s still {value!r}, expected {expected!r}"
            )
        await asyncio.sleep(0.1)
    return loop.time() - started


async def join_all(clients: list[Client], room: str) -> None:
    replies = await asyncio.gather(*(c.call("join", {"room": room}, timeout=15) for c in clients))
    assert all(reply["room"] == room for reply in replies), replies


async def attempt_join(client: Client, room: str) -> dict[str, Any]:
    """The join's reply, or the error's payload."""
    try:
        return dict(await client.call("join", {"room": room}, timeout=15))
    except ErrorReply as exc:
        return dict(exc.payload)


async def take_said(client: Client, sender: str, timeout: float) -> dict[str, Any]:
    """The next ``said`` broadcast from ``sender`` (others stay in the inbox)."""
    message = await client.inbox.take(
        lambda m: m.get("event") == "said" and (m.get("payload") or {}).get("sender") == sender,
        timeout,
        f"'said' from {sender!r} at {where(client)}",
    )
    return dict(message["payload"])


def pending(client: Client, event: str) -> list[Any]:
    return [m.get("payload") for m in client.inbox.pending() if m.get("event") == event]


async def assert_nothing_more(clients: list[Client], event: str, settle: float = 0.4) -> None:
    """No client holds (or gets within ``settle`` seconds) another ``event``: no copies."""
    await asyncio.sleep(settle)
    for client in clients:
        assert pending(client, event) == [], f"{where(client)} got extra {event!r}"


def room_homed_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(10_000) if home_of(f"{prefix}-{i}", SHARDS) == shard)


# -- shared nodes ----------------------------------------------------------------------------------


async def test_nodes_have_their_own_ids_and_connection_ids_name_them(nodes: list[Node]) -> None:
    a, b = nodes
    assert a.node_id != b.node_id
    assert a.redis_url == b.redis_url
    async with asyncio.timeout(30):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                for pool, node in ((pool_a, a), (pool_b, b)):
                    for shard, (client,) in (await pool.on_shards(range(SHARDS))).items():
                        me = await client.call("whoami", timeout=10)
                        assert me["id"] == client.conn_id == client.greeting["conn_id"]
                        assert me["shard"] == shard
                        assert node_of(me["id"]) == node.node_id


async def test_redis_up_is_1_while_every_shard_is_connected(nodes: list[Node]) -> None:
    """docs/metrics.md: ``redis_up{shard}`` is 1 while that shard's Redis connection serves.
    Every shard of both nodes logged "connected" and serves rooms across nodes (the other
    tests), so each node's /metrics must say 1 for each of its shards."""
    async with asyncio.timeout(20):
        for node in nodes:
            for shard in range(SHARDS):
                await node.process.wait_stderr(
                    REDIS_CONNECTED, lambda m, shard=shard: int(m.group(1)) == shard, timeout=5
                )
            for shard in range(SHARDS):
                await node.wait_metric(
                    "socketspec_redis_up", lambda v: v == 1, timeout=5, shard=str(shard)
                )


async def test_room_broadcasts_cross_nodes_once_each_and_in_order(nodes: list[Node]) -> None:
    """Members on both shards of both nodes: a broadcast sent on A reaches all four exactly
    once, one sent on B too; two streams sent at once, one from each node, reach every member
    once each, each in its sender's order."""
    a, b = nodes
    room = "cross-broadcast"
    count = 40
    async with asyncio.timeout(40):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = flat(await pool_a.on_shards(range(SHARDS)))
                on_b = flat(await pool_b.on_shards(range(SHARDS)))
                members = on_a + on_b
                await join_all(members, room)

                for sender, tag in ((on_a[0], "one-from-a"), (on_b[1], "one-from-b")):
                    reply = await sender.call(
                        "say", {"room": room, "sender": tag, "n": 0}, timeout=10
                    )
                    assert reply == {"n": 0}
                    for member in members:
                        got = await member.receive("said", timeout=10)
                        assert got == {"room": room, "sender": tag, "n": 0}, where(member)
                await assert_nothing_more(members, "said")

                async def stream(sender: Client, tag: str) -> None:
                    for n in range(count):
                        await sender.emit("say", {"room": room, "sender": tag, "n": n})

                await asyncio.gather(stream(on_a[1], "seq-a"), stream(on_b[0], "seq-b"))
                received = await asyncio.gather(
                    *(receive_n(m, "said", 2 * count, 20) for m in members)
                )
                for member, payloads in zip(members, received, strict=True):
                    sequence = [(p["sender"], p["n"]) for p in payloads]
                    assert len(set(sequence)) == len(sequence) == 2 * count, where(member)
                    for tag in ("seq-a", "seq-b"):
                        numbers = [n for sender, n in sequence if sender == tag]
                        assert numbers == list(range(count)), f"{where(member)}: {tag} {numbers}"
                await assert_nothing_more(members, "said")


async def test_broadcast_counts_the_sending_nodes_members_and_one_per_other_node(
    nodes: list[Node],
) -> None:
    """docs/cluster.md: with Redis, ``broadcast`` returns the members of the sending node it
    was fanned out to (exact, its home knows them) plus one for each other node that received
    it (Redis's PUBLISH reply counts subscribed nodes, each with at least one member): a lower
    bound of the members cluster-wide. Node A has 2 members (one per shard), node B 3; the
    sender is on A's shard that is not the room's home, then on B."""
    a, b = nodes
    room = room_homed_on(0, "counted-nodes")
    async with asyncio.timeout(40):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = await pool_a.on_shards(range(SHARDS))
                on_b = await pool_b.on_shards({0: 2, 1: 1})
                members = flat(on_a) + flat(on_b)
                await join_all(members, room)
                for sender, expected in ((on_a[1][0], 2 + 1), (on_b[0][0], 3 + 1)):
                    text = f"counted from {where(sender)}"
                    reply = await sender.call(
                        "say_counted", {"room": room, "text": text}, timeout=10
                    )
                    assert reply["delivered"] == expected, where(sender)
                    assert reply["delivered"] <= len(members)
                    for member in members:
                        got = await member.receive("said", timeout=10)
                        assert got == {"room": room, "text": text}, where(member)
                    reply = await sender.call(
                        "say_counted",
                        {"room": room, "text": text, "exclude_self": True},
                        timeout=10,
                    )
                    assert reply["delivered"] == expected - 1, where(sender)
                    for member in members:
                        if member is not sender:
                            got = await member.receive("said", timeout=10)
                            assert got == {"room": room, "text": text}, where(member)
                await assert_nothing_more(members, "said")


async def test_emit_to_a_connection_on_the_other_node_reaches_it(nodes: list[Node]) -> None:
    """``rooms.emit_to(conn_id)`` from each shard of one node to each shard of the other, both
    ways; and ``emit`` on the member objects ``members()`` returns for the other node's
    members."""
    a, b = nodes
    async with asyncio.timeout(40):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = flat(await pool_a.on_shards(range(SHARDS)))
                on_b = flat(await pool_b.on_shards(range(SHARDS)))
                for senders, targets in ((on_a, on_b), (on_b, on_a)):
                    for sender in senders:
                        for target in targets:
                            text = f"{sender.conn_id} -> {target.conn_id}"
                            reply = await sender.call(
                                "direct", {"target": target.conn_id, "text": text}, timeout=10
                            )
                            assert reply == {"sent": True}, f"{where(sender)} -> {where(target)}"
                            got = await target.receive("direct", timeout=10)
                            assert got == {"from": sender.conn_id, "text": text}
                await assert_nothing_more(on_a + on_b, "direct")

                room = "pokes"
                members = on_a + on_b
                users = {**pool_a.user_of, **pool_b.user_of}
                await join_all(members, room)
                for asker in (on_a[0], on_b[1]):
                    assert await asker.call("poke", {"room": room}, timeout=10) == len(members)
                    for member in members:
                        got = await member.receive("poked", timeout=10)
                        assert got == {
                            "by": asker.conn_id,
                            "seen_id": member.conn_id,
                            "seen_user_id": users[str(member.conn_id)],
                        }, where(member)
                await assert_nothing_more(members, "poked")


@pytest.mark.parametrize("kicker_node", [0, 1], ids=["kick-from-a", "kick-from-b"])
async def test_disconnect_on_a_proxy_of_a_remote_member_closes_that_client(
    nodes: list[Node], kicker_node: int
) -> None:
    kicking, kicked = nodes[kicker_node], nodes[1 - kicker_node]
    room = f"kicks-{kicker_node}"
    async with asyncio.timeout(30):
        async with Pool(kicking.url(), token=True, users="k") as pool_kicker:
            async with Pool(kicked.url(), token=True, users="v") as pool_victims:
                (kicker,) = (await pool_kicker.on_shards([0]))[0]
                victims = flat(await pool_victims.on_shards(range(SHARDS)))
                await join_all([kicker, *victims], room)
                assert await kicker.call("kick", {"room": room}, timeout=10) == len(victims)
                for victim in victims:
                    assert await victim.wait_closed(10) == 1000, where(victim)
                assert not kicker.closed
                assert (await kicker.call("whoami", timeout=10))["id"] == kicker.conn_id
                # The kicked connections left the room on their node, for every node.
                await eventually(
                    lambda: listed_ids(kicker, room), {kicker.conn_id}, what="members after kick"
                )


async def test_members_lists_the_clients_of_both_nodes(nodes: list[Node]) -> None:
    """Two clients on each shard of each node join; every one of them, asking its own shard,
    gets the eight ids of the ``__connect__`` greetings with their users; a disconnect on one
    node and a leave on the other are seen by both."""
    a, b = nodes
    room = "roster"
    async with asyncio.timeout(40):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = flat(await pool_a.on_shards(range(SHARDS), per_shard=2))
                on_b = flat(await pool_b.on_shards(range(SHARDS), per_shard=2))
                everyone = on_a + on_b
                await join_all(everyone, room)
                users = {**pool_a.user_of, **pool_b.user_of}
                expected = {c.greeting["conn_id"]: users[c.greeting["conn_id"]] for c in everyone}
                assert len(expected) == 8
                for asker in everyone:
                    listed = await asker.call("members", {"room": room}, timeout=10)
                    assert len(listed) == len(everyone), (where(asker), listed)
                    assert {e["id"]: e["user_id"] for e in listed} == expected, where(asker)
                    assert all(e["role"] == "member" for e in listed)

                gone = on_b.pop()
                await pool_b.discard(gone)
                leaver = on_a.pop(0)
                await leaver.call("leave", {"room": room}, timeout=10)
                remaining = ids(on_a + on_b)
                for asker in (on_a[0], on_a[-1], on_b[0], on_b[-1]):
                    await eventually(
                        lambda asker=asker: listed_ids(asker, room),
                        remaining,
                        what=f"members seen by {where(asker)}",
                    )


async def test_a_leave_is_seen_by_its_shard_as_soon_as_it_returns(nodes: list[Node]) -> None:
    """Read-your-writes, as on one node: the ``leave`` handler lists the room right after
    ``rooms.leave`` returns and must not see the leaver, whether the leaver's shard is the
    room's home (whose member list now comes from Redis) or not; the other node soon agrees."""
    a, b = nodes
    async with asyncio.timeout(40):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                stale: list[str] = []
                for home in range(SHARDS):
                    room = room_homed_on(home, "ryw")
                    placed_a = await pool_a.on_shards(range(SHARDS), per_shard=2)
                    on_b = flat(await pool_b.on_shards(range(SHARDS)))
                    everyone = flat(placed_a) + on_b
                    await join_all(everyone, room)
                    for shard in (home, 1 - home):  # the leaver on the home, then elsewhere
                        leaver = placed_a[shard].pop()
                        everyone.remove(leaver)
                        left = await leaver.call("leave", {"room": room}, timeout=10)
                        if set(left["members"]) != ids(everyone):
                            stale.append(
                                f"leaver on shard {shard}, room homed on shard {home}: "
                                f"{leaver.conn_id} still listed"
                                if leaver.conn_id in left["members"]
                                else f"shard {shard}, home {home}: listed {left['members']}"
                            )
                        await eventually(
                            lambda room=room, asker=on_b[0]: listed_ids(asker, room),
                            ids(everyone),
                            what="node B",
                        )
                    await pool_a.close_all()
                    await pool_b.close_all()
                assert stale == [], (
                    "right after rooms.leave returned, its shard still listed:\n"
                    + ("\n".join(stale))
                )


async def test_max_members_holds_under_concurrent_joins_from_both_nodes(
    nodes: list[Node],
) -> None:
    """``capped`` (max_members=5): 8 clients on each node (4 per shard) join at once; exactly 5
    get in, over both nodes, the 11 others get the room-full error; after one leaves, exactly
    one more of them gets in."""
    a, b = nodes
    async with asyncio.timeout(45):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = flat(await pool_a.on_shards(range(SHARDS), per_shard=4))
                on_b = flat(await pool_b.on_shards(range(SHARDS), per_shard=4))
                clients = on_a + on_b
                assert len(clients) == 16
                results = await asyncio.gather(*(attempt_join(c, "capped") for c in clients))
                joined = [c for c, r in zip(clients, results, strict=True) if r.get("room")]
                refused = [r for r in results if not r.get("room")]
                assert len(joined) == 5, results
                assert len(refused) == 11
                assert {r["code"] for r in refused} == {"PERMISSION_ERROR"}, refused
                assert all(r["details"]["max_members"] == 5 for r in refused), refused
                for asker in (on_a[0], on_b[0]):
                    assert await listed_ids(asker, "capped") == ids(joined), where(asker)

                leaver = joined.pop(0)
                await leaver.call("leave", {"room": "capped"}, timeout=10)
                waiting = [c for c in clients if c not in joined and c is not leaver]
                for asker in (on_a[0], on_b[0]):
                    await eventually(
                        lambda asker=asker: listed_ids(asker, "capped"),
                        ids(joined),
                        what=f"members seen by {where(asker)}",
                    )
                results = await asyncio.gather(*(attempt_join(c, "capped") for c in waiting))
                admitted = [c for c, r in zip(waiting, results, strict=True) if r.get("room")]
                assert len(admitted) == 1, results
                assert await listed_ids(on_a[0], "capped") == ids(joined + admitted)


# -- destructive: their own Redis and nodes -------------------------------------------------------


async def test_a_killed_node_stops_counting_once_its_ttl_expires(
    redis_server: RedisServer, node_factory: StartNodes
) -> None:
    """Node B holds 3 of the 5 places of ``capped``, node A 2; B is killed with SIGKILL
    (supervisor and shards). Within the TTL (plus slack) a join on A gets in, 2 more of 3
    concurrent ones too, and ``members`` on A lists none of B's members; Redis keeps none."""
    a, b = node_factory(
        2, ROOMS_APP, SHARDS, "--redis", redis_server.url, "--redis-node-ttl", str(TTL)
    )
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(45):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_b = flat(await pool_b.on_shards({0: 2, 1: 1}))
                on_a = flat(await pool_a.on_shards(range(SHARDS)))
                newcomers = [await pool_a.open() for _ in range(4)]
                await join_all(on_b + on_a, "capped")
                assert await listed_ids(on_a[0], "capped") == ids(on_a + on_b)
                full = await attempt_join(newcomers[0], "capped")
                assert full.get("code") == "PERMISSION_ERROR", full

                b.kill()
                killed_at = loop.time()
                assert b.process.proc.poll() is not None
                assert b.process.leftovers() == [], "processes of node B survived SIGKILL"

                # Until its key expires, the dead node's members still count (its key was
                # refreshed at most TTL/3 ago).
                early = await attempt_join(newcomers[0], "capped")
                if loop.time() - killed_at < TTL / 2:
                    assert early.get("code") == "PERMISSION_ERROR", early
                # The join script drops the dead node's members once its key expired.
                while (reply := await attempt_join(newcomers[0], "capped")).get("room") is None:
                    assert reply.get("code") == "PERMISSION_ERROR", reply
                    assert loop.time() - killed_at < TTL + 8, (
                        f"capped still full {TTL + 8}s after node B died: B's members count"
                    )
                    await asyncio.sleep(0.2)
                freed_after = loop.time() - killed_at
                assert freed_after > TTL / 2, f"B's members stopped counting after {freed_after}s"
                results = await asyncio.gather(*(attempt_join(c, "capped") for c in newcomers[1:]))
                admitted = [c for c, r in zip(newcomers[1:], results, strict=True) if r.get("room")]
                assert len(admitted) == 2, results
                members = [*on_a, newcomers[0], *admitted]
                assert await listed_ids(on_a[0], "capped") == ids(members)
                assert await listed_ids(on_a[1], "capped") == ids(members)
                # Redis itself keeps no entry of node B.
                client = aioredis.Redis.from_url(redis_server.url)
                try:
                    stored = await client.hgetall("socketspec:members:capped")
                finally:
                    await client.aclose()
                assert {key.decode() for key in stored} == ids(members)
                assert not any(value.startswith(b.node_id.encode()) for value in stored.values())


async def test_redis_down_serves_each_node_alone_and_up_again_joins_them(
    redis_server: RedisServer, node_factory: StartNodes
) -> None:
    """Redis is stopped (SIGTERM) while both nodes serve: a broadcast on A reaches A's members
    on both its shards and is counted as ``undelivered_remote``. Redis starts again on the same
    port, empty: within 15 s ``members`` on each node lists both nodes' members again and
    broadcasts cross again, once each."""
    a, b = node_factory(
        2, ROOMS_APP, SHARDS, "--redis", redis_server.url, "--redis-node-ttl", str(TTL)
    )
    room = "weather"
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(50):
        async with Pool(a.url(), token=True, users="a") as pool_a:
            async with Pool(b.url(), token=True, users="b") as pool_b:
                on_a = flat(await pool_a.on_shards(range(SHARDS)))
                on_b = flat(await pool_b.on_shards(range(SHARDS)))
                everyone = on_a + on_b
                await join_all(everyone, room)
                await on_a[0].call("say", {"room": room, "sender": "before", "n": 0}, timeout=10)
                for member in everyone:
                    assert (await take_said(member, "before", 10))["n"] == 0
                before = await a.metric("socketspec_broadcasts_total", path="undelivered_remote")
                lost = await a.metric("socketspec_redis_errors_total", op="connection")

                redis_server.stop()
                # Each shard of A says at once that its connection is gone, and counts it.
                for shard in range(SHARDS):
                    await a.wait_metric("socketspec_redis_up", lambda v: v == 0, shard=str(shard))
                await a.wait_metric(
                    "socketspec_redis_errors_total", lambda v: v >= lost + SHARDS, op="connection"
                )
                await asyncio.sleep(0.2)
                await on_a[0].call("say", {"room": room, "sender": "down", "n": 1}, timeout=10)
                for member in on_a:
                    assert (await take_said(member, "down", 10))["n"] == 1, where(member)
                await a.wait_metric(
                    "socketspec_broadcasts_total",
                    lambda v: v >= before + 1,
                    path="undelivered_remote",
                )
                # The node still serves its own members: a request and its room on each shard.
                for member in on_a:
                    assert (await member.call("whoami", timeout=10))["id"] == member.conn_id

                redis_server.start()
                restarted = loop.time()
                for asker in (on_a[0], on_a[1], on_b[0], on_b[1]):
                    await eventually(
                        lambda asker=asker: listed_ids(asker, room),
                        ids(everyone),
                        timeout=15 - (loop.time() - restarted),
                        what=f"members seen by {where(asker)} after Redis came back",
                    )
                n = 0
                while True:
                    n += 1
                    await on_a[0].call("say", {"room": room, "sender": "probe", "n": n}, timeout=10)
                    try:
                        await asyncio.gather(*(take_said(m, "probe", 0.5) for m in on_b))
                        break
                    except TimeoutError:
                        assert loop.time() - restarted < 15, (
                            "broadcasts on A do not reach B 15s after Redis came back"
                        )

                for sender, tag in ((on_a[1], "after-a"), (on_b[0], "after-b")):
                    await sender.call("say", {"room": room, "sender": tag, "n": 2}, timeout=10)
                    for member in everyone:
                        assert (await take_said(member, tag, 10))["n"] == 2, where(member)
                await asyncio.sleep(0.4)
                for member in everyone:
                    extra = [p for p in pending(member, "said") if p["sender"] != "probe"]
                    assert extra == [], f"{where(member)} got copies or a stale broadcast"


async def test_an_apps_redis_backend_alone_makes_the_nodes_share_rooms(
    redis_server: RedisServer, node_factory: StartNodes
) -> None:
    """``SocketApp(backend=RedisBackend(url, node_ttl=3))`` with the URL from the environment,
    and no ``--redis``: both nodes use that Redis (with that TTL), so a room spans them."""
    env = {"REDIS_BACKEND_TEST_URL": redis_server.url, "REDIS_BACKEND_TEST_TTL": "3"}
    a, b = node_factory(2, BACKEND_APP, 1, env=env)
    assert not any(arg.startswith("--redis") for arg in a.process.args)
    assert a.redis_url == b.redis_url == redis_server.url
    assert a.node_id != b.node_id
    room = "from-the-app"
    async with asyncio.timeout(30):
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            for node in (a, b):
                ttl = await client.ttl(f"socketspec:node:{node.node_id}")
                assert 0 < ttl <= 3, f"node {node.node_id}'s liveness key has TTL {ttl}, not 3"
        finally:
            await client.aclose()
        async with Pool(a.url()) as pool_a, Pool(b.url()) as pool_b:
            on_a, on_b = await pool_a.open(), await pool_b.open()
            assert node_of(str(on_a.conn_id)) == a.node_id
            assert node_of(str(on_b.conn_id)) == b.node_id
            await join_all([on_a, on_b], room)
            for asker in (on_a, on_b):
                listed = await asker.call("members", {"room": room}, timeout=10)
                assert set(listed) == ids([on_a, on_b]), where(asker)
            for sender, tag in ((on_a, "from-a"), (on_b, "from-b")):
                await sender.call("say", {"room": room, "sender": tag, "n": 0}, timeout=10)
                for member in (on_a, on_b):
                    assert (await take_said(member, tag, 10))["n"] == 0, where(member)
            await assert_nothing_more([on_a, on_b], "said")
