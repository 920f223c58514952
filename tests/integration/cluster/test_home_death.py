"""A room's home killed with a broadcast in flight to it, over a real 2-shard cluster: the
sender's broadcast returned, so a member on the surviving shard gets the message, once.

The home is held (SIGSTOP) while the sender's ``say`` reaches it, so the Publish is in its
socket, unread, when it is killed: the home never orders it, and the sender learns only
that the home went down before answering."""

from __future__ import annotations

import asyncio
import os
import signal

from clusterkit import Pool, StartCluster

from socketspec.client import Client
from socketspec.cluster.store import home_of

SHARDS = 2
HOME, SURVIVOR = 0, 1


def room_homed_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}-{i}" for i in range(10_000) if home_of(f"{prefix}-{i}", SHARDS) == shard)


async def said(client: Client, timeout: float) -> list[int]:
    """The ``n`` of every ``said`` that arrives within ``timeout`` of quiet."""
    numbers: list[int] = []
    while True:
        try:
            numbers.append((await client.receive("said", timeout=timeout))["n"])
        except TimeoutError:
            return numbers


async def test_a_broadcast_in_flight_when_its_home_is_killed_still_reaches_the_survivors(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_rooms_app:app", SHARDS)
    room = room_homed_on(HOME, "in-flight")
    home_pid = cluster.pids[HOME]
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards({SURVIVOR: 2})
        member, sender = placed[SURVIVOR]
        await member.call("join", {"room": room}, timeout=10)
        say = {"room": room, "sender": "s", "n": 1}
        assert await sender.call("say", say, timeout=10) == {"n": 1}
        assert await said(member, 1.0) == [1]

        os.kill(home_pid, signal.SIGSTOP)
        try:
            saying = asyncio.create_task(sender.call("say", {**say, "n": 2}, timeout=15))
            await asyncio.sleep(0.5)  # the Publish waits in the held home's socket
            assert not saying.done()
        finally:
            os.kill(home_pid, signal.SIGKILL)
            os.kill(home_pid, signal.SIGCONT)  # a no-op once it is dead; never left stopped
        assert await saying == {"n": 2}  # the broadcast returned: its members must get it
        assert await said(member, 2.0) == [2]

        # Later broadcasts reach the member once each, while the home is down or back.
        for n in (3, 4):
            assert await sender.call("say", {**say, "n": n}, timeout=10) == {"n": n}
        assert await said(member, 2.0) == [3, 4]
        new_home = await cluster.wait_ready(HOME, [home_pid], timeout=15)
        assert new_home != home_pid
