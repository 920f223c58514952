"""``socketspec.client`` recovering its session against real clusters of
tests/integration/apps/recovery_app.py: a lone shard, and two shards (the other shard, a
kill -9 of the client's shard, a SIGHUP reload)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from clusterkit import ClusterProcess
from recoverykit import APP, APPS, current_pids, token_rooms, wait_replaced

from socketspec.client import Client, Reconnect, connect

FAST = Reconnect(initial=0.05, maximum=0.5, jitter=0.5)


def start(workers: int) -> ClusterProcess:
    cluster = ClusterProcess(
        [APP, "--workers", str(workers), "--port", "0", "--graceful-timeout", "5"],
        cwd=APPS,
        env={"PYTHONPATH": str(APPS)},
    )
    try:
        cluster.wait_announced(60)
    except BaseException:
        cluster.kill()
        raise
    return cluster


@pytest.fixture(scope="module")
def lone_shard() -> Iterator[ClusterProcess]:
    cluster = start(1)
    try:
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture
def two_shards() -> Iterator[ClusterProcess]:
    cluster = start(2)
    try:
        yield cluster
    finally:
        cluster.kill()


async def shouted(client: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` whole ``shouted`` messages."""
    return [await client.receive_message("shouted", timeout=timeout) for _ in range(count)]


async def shout(client: Client, room: str, seq: int, **extra: Any) -> dict[str, Any]:
    payload = {"room": room, "publisher": "pub", "seq": seq, **extra}
    reply: dict[str, Any] = await client.call("shout", payload, timeout=20)
    return reply


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [int(m["pos"].rpartition(":")[2]) for m in messages]


async def test_a_dropped_client_recovers_its_id_room_and_missed_messages(
    lone_shard: ClusterProcess,
) -> None:
    recoveries: list[tuple[bool, dict[str, str]]] = []

    def on_recover(client: Client, recovered: bool, missed: dict[str, str]) -> None:
        recoveries.append((recovered, missed))

    url = lone_shard.url()
    room = "room-0"
    async with (
        connect(url, reconnect=FAST, on_recover=on_recover) as member,
        connect(url) as publisher,
    ):
        await member.call("join", {"room": room}, timeout=10)
        joined_at = token_rooms(member.recovery_token)[room]
        assert joined_at is not None
        epoch, _, start_offset = joined_at.rpartition(":")
        conn_id = member.conn_id
        await shout(publisher, room, 0)
        first = await shouted(member, 1)
        assert first[0]["room"] == room and first[0]["payload"] == {"publisher": "pub", "seq": 0}
        assert first[0]["pos"] == f"{epoch}:{int(start_offset) + 1}"

        await member.drop(pause=0.5)
        for seq in range(1, 6):  # while the member is away
            await shout(publisher, room, seq)
        await member.wait_open(timeout=10)
        assert member.conn_id == conn_id
        assert member.recovered is True
        missed = await shouted(member, 5)
        assert [m["payload"]["seq"] for m in missed] == [1, 2, 3, 4, 5]
        assert offsets(missed) == list(range(int(start_offset) + 2, int(start_offset) + 7))
        # Then live traffic, no gap and no duplicate; and the room is still its room.
        await shout(publisher, room, 6)
        live = await shouted(member, 1)
        assert live[0]["payload"]["seq"] == 6
        assert offsets(live) == [int(start_offset) + 7]
        with pytest.raises(TimeoutError):
            await member.receive_message("shouted", timeout=0.3)
        assert member.room_counts[room] == 7
        assert recoveries == [(True, {})]
        assert (await member.call("whoami", {}))["conn_id"] == conn_id


async def test_recovery_with_nothing_received_and_twice_in_a_row(
    lone_shard: ClusterProcess,
) -> None:
    url = lone_shard.url()
    room = "room-1"
    async with connect(url, reconnect=FAST) as member, connect(url) as publisher:
        await member.call("join", {"room": room}, timeout=10)
        conn_id = member.conn_id
        await member.drop(pause=0.3)  # nothing received yet: the token's position serves
        await shout(publisher, room, 0)
        await member.wait_open(timeout=10)
        assert member.recovered and member.conn_id == conn_id
        assert [m["payload"]["seq"] for m in await shouted(member, 1)] == [0]
        await member.drop(pause=0.3)
        await shout(publisher, room, 1)
        await member.wait_open(timeout=10)
        assert member.recovered and member.conn_id == conn_id
        assert [m["payload"]["seq"] for m in await shouted(member, 1)] == [1]


async def test_a_call_in_flight_at_a_drop_is_answered_once(lone_shard: ClusterProcess) -> None:
    url = lone_shard.url()
    room = "room-2"
    async with connect(url) as member, connect(url, reconnect=FAST) as publisher:
        await member.call("join", {"room": room}, timeout=10)
        calling = asyncio.create_task(shout(publisher, room, 0, delay=1.0))
        await asyncio.sleep(0.3)  # the handler is running
        await publisher.drop(pause=0.2)
        reply = await calling
        assert reply["seq"] == 0
        assert publisher.resent_calls == 1
        assert [m["payload"]["seq"] for m in await shouted(member, 1)] == [0]
        with pytest.raises(TimeoutError):  # the resent call was not run again
            await member.receive_message("shouted", timeout=1.5)


async def test_a_call_cut_between_its_broadcast_and_its_reply_runs_once(
    lone_shard: ClusterProcess,
) -> None:
    """The drop is noticed at once (a reset) while the handler has broadcast and not yet
    replied: the handler finishes, its reply is parked, the resend gets it."""
    url = lone_shard.url()
    room = "room-4"
    async with connect(url) as member, connect(url, reconnect=FAST) as publisher:
        await member.call("join", {"room": room}, timeout=10)
        ran_on = (await publisher.call("whoami", {}))["pid"]
        calling = asyncio.create_task(shout(publisher, room, 7, linger=1.0))
        assert [m["payload"]["seq"] for m in await shouted(member, 1)] == [7]
        await publisher.drop(pause=0.2)
        reply = await calling
        assert (reply["seq"], reply["pid"]) == (7, ran_on)
        assert publisher.resent_calls == 1
        with pytest.raises(TimeoutError):  # not run a second time
            await member.receive_message("shouted", timeout=1.5)


async def reconnected_again(client: Client, reconnects: int, timeout: float = 15.0) -> None:
    """Until ``client`` reconnected once more than ``reconnects`` times, and is open."""
    for _ in range(int(timeout / 0.05)):
        if client.reconnects > reconnects:
            await client.wait_open(timeout=timeout)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no reconnection within {timeout:g}s (still {client.reconnects})")


async def dropped_onto_another_shard(client: Client, shard: int, tries: int = 40) -> None:
    """Drop ``client`` until its recovered session is served by ``shard``."""
    for _ in range(tries):
        await client.drop()
        await client.wait_open(timeout=10)
        if client.greeting.get("shard") == shard:
            return
    raise AssertionError(f"{tries} reconnections never reached shard {shard}")


async def test_recovery_on_the_other_shard_and_after_a_kill_and_a_reload(
    two_shards: ClusterProcess,
) -> None:
    url = two_shards.url()
    room = "room-3"
    async with connect(url, reconnect=FAST) as member, connect(url, reconnect=FAST) as publisher:
        await member.call("join", {"room": room}, timeout=10)
        conn_id = member.conn_id
        seq = 0

        async def check_received_next() -> None:
            nonlocal seq
            await shout(publisher, room, seq)
            got = await shouted(member, 1)
            assert got[0]["payload"]["seq"] == seq, got
            seq += 1

        await check_received_next()
        first_shard = member.greeting["shard"]
        await dropped_onto_another_shard(member, 1 - first_shard)
        assert member.recovered and member.conn_id == conn_id
        await check_received_next()

        # kill -9 of the shard serving the member, messages sent while it is away.
        served_by = member.greeting["shard"]
        victim = current_pids(two_shards)[served_by]
        os.kill(victim, signal.SIGKILL)
        for _ in range(3):
            await shout(publisher, room, seq)
            seq += 1
        await member.wait_open(timeout=15)
        got = await shouted(member, 3, timeout=15)
        assert [m["payload"]["seq"] for m in got] == [seq - 3, seq - 2, seq - 1]
        assert member.recovered and member.conn_id == conn_id
        await wait_replaced(two_shards, served_by, victim, 30)

        # A rolling reload: the drain notice carries the token; the old shard closes the
        # connection once it drained, and the member comes back on the new one.
        reconnects = member.reconnects
        before = current_pids(two_shards)
        two_shards.send(signal.SIGHUP)
        for shard, pid in before.items():
            await wait_replaced(two_shards, shard, pid, 60)
        await reconnected_again(member, reconnects)
        await publisher.wait_open(timeout=15)
        await check_received_next()
        assert member.conn_id == conn_id
        assert member.recovered
        offsets_seen = member.room_counts[room]
        assert offsets_seen == seq
