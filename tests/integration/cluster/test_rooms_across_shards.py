"""Rooms are one logical room across the shards of ``socketspec-cluster``: real processes, real
sockets, clients spread over every shard (2 and 4 shards).

Each test uses its own room names, so the tests of a module can share one cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from clusterkit import ClusterProcess, Pool, join_and_drop, receive_n, token_for

from socketspec.client import Client, ErrorReply
from socketspec.cluster.store import home_of


async def listed_ids(client: Client, room: str) -> set[str]:
    return {entry["id"] for entry in await client.call("members", {"room": room})}


async def eventually(
    probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 5
) -> None:
    """``await probe()`` until it returns ``expected`` (fails with the last value after
    ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await probe()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"after {timeout:g}s still {value!r}, expected {expected!r}")
        await asyncio.sleep(0.05)


def flat(placed: dict[int, list[Client]]) -> list[Client]:
    return [client for clients in placed.values() for client in clients]


async def test_every_client_reports_its_shard_and_every_shard_serves(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = range(len(rooms_cluster.pids))
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(shards)
        for shard, (client,) in placed.items():
            me = await client.call("whoami")
            assert me["shard"] == shard == client.greeting["shard"]
            assert me["id"] == client.conn_id
            assert me["user_id"] == pool.user_of[client.conn_id]
        # A connection id names its shard in its first byte.
        for shard, (client,) in placed.items():
            assert client.conn_id is not None
            assert int(client.conn_id[:2], 16) == shard


async def test_broadcasts_from_every_shard_reach_each_member_once_in_one_order(
    rooms_cluster: ClusterProcess,
) -> None:
    """Senders on every shard broadcast numbered messages at once; every member (two per
    shard) sees each message exactly once, each sender's in its order, and all members see
    the very same sequence (the room's home orders them)."""
    shards = len(rooms_cluster.pids)
    per_sender = 40
    room = f"chorus-{shards}"
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards), per_shard=2)
        members = flat(placed)
        await asyncio.gather(*(m.call("join", {"room": room}) for m in members))
        senders = {shard: clients[0] for shard, clients in placed.items()}

        async def send_all(shard: int, client: Client) -> None:
            for n in range(per_sender):
                await client.emit("say", {"room": room, "sender": f"s{shard}", "n": n})

        await asyncio.gather(*(send_all(shard, c) for shard, c in senders.items()))
        total = shards * per_sender
        received = await asyncio.gather(*(receive_n(m, "said", total, 30) for m in members))

        expected = {(f"s{shard}", n) for shard in range(shards) for n in range(per_sender)}
        reference = [(p["sender"], p["n"]) for p in received[0]]
        for member, payloads in zip(members, received, strict=True):
            sequence = [(p["sender"], p["n"]) for p in payloads]
            assert len(sequence) == len(set(sequence)) == total, member.greeting["shard"]
            assert set(sequence) == expected
            for shard in range(shards):
                numbers = [n for sender, n in sequence if sender == f"s{shard}"]
                assert numbers == list(range(per_sender))
            assert sequence == reference, (
                f"member on shard {member.greeting['shard']} saw another order than the member "
                f"on shard {members[0].greeting['shard']}"
            )
        # Nothing more arrives: no member got a copy.
        await asyncio.sleep(0.3)
        for member in members:
            with pytest.raises(TimeoutError):
                await member.receive("said", timeout=0.05)


async def test_rooms_homed_on_every_shard_deliver_to_members_on_every_shard(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = len(rooms_cluster.pids)
    rooms = {}
    for i in range(1000):
        name = f"homed-{shards}-{i}"
        rooms.setdefault(home_of(name, shards), name)
        if len(rooms) == shards:
            break
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards))
        members = flat(placed)
        for room in rooms.values():
            await asyncio.gather(*(m.call("join", {"room": room}) for m in members))
        for home, room in rooms.items():
            for sender in members:
                n = sender.greeting["shard"]
                await sender.call("say", {"room": room, "sender": f"h{home}", "n": n})
                for member in members:
                    got = await member.receive("said", timeout=10)
                    assert got == {"room": room, "sender": f"h{home}", "n": n}


async def test_direct_emit_by_connection_id_crosses_shards(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = len(rooms_cluster.pids)
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards))
        for a, (sender,) in placed.items():
            for b, (target,) in placed.items():
                text = f"from {a} to {b}"
                await sender.call("direct", {"target": target.conn_id, "text": text})
                got = await target.receive("direct", timeout=10)
                assert got == {"from": sender.conn_id, "text": text}
        # Nobody else got any of them.
        await asyncio.sleep(0.2)
        for (client,) in placed.values():
            with pytest.raises(TimeoutError):
                await client.receive("direct", timeout=0.05)


async def test_emit_to_reports_a_live_connection_on_any_shard_as_sent(
    rooms_cluster: ClusterProcess,
) -> None:
    """``rooms.emit_to`` returns False only "when no such connection is live" (its
    docstring), whichever shard the connection is on."""
    shards = len(rooms_cluster.pids)
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards))
        sender = placed[0][0]
        for shard, (target,) in placed.items():
            reply = await sender.call("direct", {"target": target.conn_id, "text": "live?"})
            assert await target.receive("direct", timeout=10) == {
                "from": sender.conn_id,
                "text": "live?",
            }
            assert reply == {"sent": True}, f"emit_to a live connection on shard {shard}"
        gone = placed[shards - 1][0]
        await pool.discard(gone)
        await eventually(
            lambda: sender.call("direct", {"target": gone.conn_id, "text": "gone"}),
            {"sent": False},
        )


async def test_members_is_cluster_wide_and_remote_members_carry_their_identity(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = len(rooms_cluster.pids)
    room = f"roster-{shards}"
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards), per_shard=2)
        members = flat(placed)
        await asyncio.gather(*(m.call("join", {"room": room}) for m in members))
        expected = {m.conn_id: pool.user_of[m.conn_id] for m in members}
        for asker in members:
            listed = await asker.call("members", {"room": room})
            assert {entry["id"]: entry["user_id"] for entry in listed} == expected
            assert len(listed) == len(members)
            assert all(entry["role"] == "member" for entry in listed)
        # A member leaves: its own shard no longer lists it once the leave returns, and
        # (the leave travels to the home by itself) neither does any other shard soon after.
        gone = members.pop()
        left = await gone.call("leave", {"room": room})
        assert set(left["members"]) == {m.conn_id for m in members}
        for asker in members:
            await eventually(
                lambda asker=asker: listed_ids(asker, room), {m.conn_id for m in members}
            )
        # A member disconnects: every shard stops listing it.
        closed = members.pop(0)
        await pool.discard(closed)
        for asker in members:
            await eventually(
                lambda asker=asker: listed_ids(asker, room), {m.conn_id for m in members}
            )


async def test_a_connection_dropped_while_its_join_is_in_flight_leaves_no_ghost_member(
    rooms_cluster: ClusterProcess,
) -> None:
    """Connections on shards other than the room's home send a join and drop at once; when
    they are gone, ``members`` lists none of them (and they do not count as members)."""
    shards = len(rooms_cluster.pids)
    room = next(
        f"ghosts-{shards}-{i}" for i in range(1000) if home_of(f"ghosts-{shards}-{i}", shards) == 0
    )
    async with Pool(rooms_cluster.url(), token=True) as pool:
        (observer,) = (await pool.on_shards([0]))[0]
        remote = 0
        for i in range(40):
            shard = await join_and_drop(
                rooms_cluster.port, rooms_cluster.path, token_for(f"ghost-{i}"), room
            )
            remote += shard != 0
        assert remote >= 5, "too few connections landed on a shard other than the home"
        await eventually(lambda: listed_ids(observer, room), set(), timeout=3)


async def test_emit_on_member_proxies_reaches_members_on_other_shards(
    rooms_cluster: ClusterProcess,
) -> None:
    """``members()`` on one shard returns objects for members on the others; their ``emit``
    reaches those members, and their identity is the member's."""
    shards = len(rooms_cluster.pids)
    room = f"proxies-{shards}"
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards), per_shard=2)
        members = flat(placed)
        await asyncio.gather(*(m.call("join", {"room": room}) for m in members))
        for asker in (clients[0] for clients in placed.values()):
            assert await asker.call("poke", {"room": room}) == len(members)
            for member in members:
                got = await member.receive("poked", timeout=10)
                assert got == {
                    "by": asker.conn_id,
                    "seen_id": member.conn_id,
                    "seen_user_id": pool.user_of[member.conn_id],
                }


async def test_disconnect_on_member_proxies_closes_members_on_other_shards(
    rooms_cluster: ClusterProcess,
) -> None:
    """docs/cluster.md: remote members' ``emit`` and ``disconnect`` work across shards."""
    shards = len(rooms_cluster.pids)
    room = f"kicks-{shards}"
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards))
        members = flat(placed)
        await asyncio.gather(*(m.call("join", {"room": room}) for m in members))
        kicker = placed[0][0]
        assert await kicker.call("kick", {"room": room}) == shards - 1
        for member in members:
            if member is not kicker:
                assert await member.wait_closed(10) == 1000, member.greeting["shard"]
        assert not kicker.closed
        assert await kicker.call("whoami") is not None


async def test_max_members_holds_under_concurrent_joins_from_every_shard(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = len(rooms_cluster.pids)
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards), per_shard=20 // shards)
        clients = flat(placed)
        assert len(clients) == 20

        async def attempt(client: Client) -> Any:
            try:
                return await client.call("join", {"room": "capped"}, timeout=15)
            except ErrorReply as exc:
                return exc.payload

        results = await asyncio.gather(*(attempt(c) for c in clients))
        joined = [c for c, r in zip(clients, results, strict=True) if r.get("room") == "capped"]
        refused = [r for r in results if r.get("room") != "capped"]
        assert len(joined) == 5, results
        assert len(refused) == 15
        assert {r["code"] for r in refused} == {"PERMISSION_ERROR"}, refused
        assert all(r["details"]["max_members"] == 5 for r in refused)
        listed = await clients[0].call("members", {"room": "capped"})
        assert {entry["id"] for entry in listed} == {c.conn_id for c in joined}
        # A member leaves: exactly one more can join.
        left = await joined[0].call("leave", {"room": "capped"})
        assert set(left["members"]) == {c.conn_id for c in joined[1:]}
        waiting = [c for c in clients if c not in joined]
        for client in waiting:
            await eventually(
                lambda client=client: listed_ids(client, "capped"), set(left["members"])
            )
        results = await asyncio.gather(*(attempt(c) for c in waiting))
        assert sum(1 for r in results if r.get("room") == "capped") == 1, results


async def test_broadcast_all_and_broadcast_except_reach_every_shard(
    rooms_cluster: ClusterProcess,
) -> None:
    shards = len(rooms_cluster.pids)
    async with Pool(rooms_cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(shards), per_shard=2)
        clients = flat(placed)
        for sender in (clients_[0] for clients_ in placed.values()):
            tag = f"all from {sender.greeting['shard']}"
            await sender.call("shout_all", {"text": tag})
            for client in clients:
                got = await client.receive("shout", timeout=10)
                assert got == {"from": sender.conn_id, "text": tag}

            tag = f"except from {sender.greeting['shard']}"
            await sender.call("shout_except", {"text": tag})
            for client in clients:
                if client is not sender:
                    got = await client.receive("shout", timeout=10)
                    assert got == {"from": sender.conn_id, "text": tag}
            # The sender's next shout is the next broadcast_all, not its own broadcast_except.
            await sender.call("shout_all", {"text": "marker"})
            for client in clients:
                got = await client.receive("shout", timeout=10)
                assert got == {"from": sender.conn_id, "text": "marker"}
