"""What ``broadcast``, ``broadcast_except`` and ``broadcast_all`` return on one node of 2 shards:
the number of members (connections) the message was fanned out to, cluster-wide, whichever
shard sends it and wherever the room's home is; and every one of them gets it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import ClusterProcess, Pool, StartCluster

from socketspec.client import Client
from socketspec.cluster.store import home_of

SHARDS = 2
APP = "cluster_rooms_app:app"


def room_homed_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(10_000) if home_of(f"{prefix}-{i}", SHARDS) == shard)


async def take_text(client: Client, event: str, text: str, timeout: float = 10) -> dict[str, Any]:
    """The next ``event`` whose payload's text is ``text`` (others stay in the inbox)."""
    message = await client.inbox.take(
        lambda m: m.get("event") == event and (m.get("payload") or {}).get("text") == text,
        timeout,
        f"{event!r} {text!r}",
    )
    return dict(message["payload"])


def holds(client: Client, event: str, text: str) -> bool:
    return any(
        m.get("event") == event and (m.get("payload") or {}).get("text") == text
        for m in client.inbox.pending()
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    # Shared by the module's tests (each uses rooms of its own).
    started = ClusterProcess([APP, "--workers", str(SHARDS), "--port", "0"])
    try:
        started.wait_announced(60)
        yield started
    finally:
        started.kill()


@pytest.mark.parametrize("home", [0, 1])
async def test_broadcast_from_the_shard_that_is_not_the_home_counts_every_member(
    cluster: ClusterProcess, home: int
) -> None:
    """Members on both shards (2 on the home, 3 on the other); the sender is a member on the
    shard that is not the room's home, then one on the home: both are told 5, and with
    ``exclude`` of themselves 4; every member gets each message once."""
    room = room_homed_on(home, "counted")
    other = 1 - home
    async with asyncio.timeout(40):
        async with Pool(cluster.url(), token=True) as pool:
            placed = await pool.on_shards({home: 2, other: 3})
            members = placed[home] + placed[other]
            for member in members:
                await member.call("join", {"room": room}, timeout=10)
            for sender in (placed[other][0], placed[home][0]):
                text = f"from shard {sender.greeting['shard']}"
                reply = await sender.call("say_counted", {"room": room, "text": text}, timeout=10)
                assert reply == {"delivered": 5, "shard": sender.greeting["shard"]}
                for member in members:
                    await take_text(member, "said", text)

                text = f"{text}, not to itself"
                reply = await sender.call(
                    "say_counted", {"room": room, "text": text, "exclude_self": True}, timeout=10
                )
                assert reply["delivered"] == 4
                for member in members:
                    if member is not sender:
                        await take_text(member, "said", text)
                await asyncio.sleep(0.3)
                assert not holds(sender, "said", text)
            for member in members:
                assert not [m for m in member.inbox.pending() if m.get("event") == "said"]


async def test_a_room_without_members_counts_0_from_either_shard(cluster: ClusterProcess) -> None:
    async with asyncio.timeout(30):
        async with Pool(cluster.url(), token=True) as pool:
            placed = await pool.on_shards(range(SHARDS))
            for home in range(SHARDS):
                room = room_homed_on(home, "empty-counted")
                for (sender,) in placed.values():
                    reply = await sender.call("say_counted", {"room": room, "text": "x"})
                    assert reply["delivered"] == 0


async def test_broadcast_except_and_all_count_every_connection_of_the_node(
    start_cluster: StartCluster,
) -> None:
    """A cluster of its own (no other test's connections): 2 clients on each shard;
    ``broadcast_all`` counts 4 from either shard, ``broadcast_except`` of the sender 3."""
    fresh = start_cluster(APP, SHARDS)
    async with asyncio.timeout(40):
        async with Pool(fresh.url(), token=True) as pool:
            placed = await pool.on_shards(range(SHARDS), per_shard=2)
            clients = [client for group in placed.values() for client in group]
            first = placed[0][0]
            # The connections on_shards opened and closed again may take a moment to be gone.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while (await first.call("shout_all_counted", {"text": "settle"}))["delivered"] != 4:
                assert loop.time() < deadline, "the closed connections still count"
                await asyncio.sleep(0.1)
            for sender, _ in placed.values():
                text = f"all from {sender.greeting['shard']}"
                reply = await sender.call("shout_all_counted", {"text": text}, timeout=10)
                assert reply["delivered"] == 4
                for client in clients:
                    await take_text(client, "shout", text)

                text = f"except from {sender.greeting['shard']}"
                reply = await sender.call("shout_except_counted", {"text": text}, timeout=10)
                assert reply["delivered"] == 3
                for client in clients:
                    if client is not sender:
                        await take_text(client, "shout", text)
                await asyncio.sleep(0.3)
                assert not holds(sender, "shout", text)
