"""Room history over a real 2-shard ``socketspec-cluster`` without Redis: a history room's
messages are positioned at its home, in one order for every member on every shard; a kill
-9 of the home loses nothing (the new home is rebuilt from the other shard's copy, and a
member recovers from it); a rolling reload (SIGHUP) keeps the history and its positions; a
connection recovers on the other shard than it was on, again and again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.parse
import urllib.request
from typing import Any

from clusterkit import METRICS_LINE, ClusterProcess, Pool, StartCluster
from prometheus_client.parser import text_string_to_metric_families

from socketspec.client import Client
from socketspec.cluster.store import home_of
from socketspec.errors import ErrorReply
from socketspec.history import Position

SHARDS = 2
APP = "cluster_history_app:app"


def room_homed_on(shard: int, prefix: str) -> str:
    names = (f"h-{prefix}{i}" for i in range(10_000))
    return next(name for name in names if home_of(name, SHARDS) == shard)


async def said(client: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The next ``count`` ``said`` envelopes (with their room and position)."""
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await client.receive_message("said", timeout=timeout))
    return out


async def quiet(client: Client, wait: float = 0.5) -> list[dict[str, Any]]:
    """Every ``said`` still arriving within ``wait`` of quiet (none expected: a duplicate)."""
    out = []
    while True:
        try:
            out.append(await client.receive_message("said", timeout=wait))
        except TimeoutError:
            return out


def positions(envelopes: list[dict[str, Any]]) -> list[Position]:
    return [Position.parse(envelope["pos"]) for envelope in envelopes]


def contiguous(envelopes: list[dict[str, Any]], first: int) -> bool:
    """One epoch, offsets ``first``, ``first + 1``, ... in order."""
    found = positions(envelopes)
    return len({p.epoch for p in found}) == 1 and [p.offset for p in found] == list(
        range(first, first + len(found))
    )


async def token_after_join(client: Client, room: str) -> str:
    """Join ``room`` and return the recovery token that comes with the join."""
    await client.call("join", {"room": room}, timeout=10)
    token = client.recovery_token  # the join's ``__recovery__`` came before its ack
    assert isinstance(token, str)
    return token


async def say_while_home_down(sender: Client, room: str, n: int) -> None:
    """A ``say`` that waits for the room's home (up to 5 s in the server); its retryable
    error, should the replacement take longer to boot on a loaded machine, is retried."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            assert await sender.call("say", {"room": room, "n": n}, timeout=20) == {"n": n}
            return
        except ErrorReply as error:
            retry = (error.payload.get("details") or {}).get("retry")
            if not retry or asyncio.get_running_loop().time() > deadline:
                raise


def recover_url(cluster: ClusterProcess, token: str, since: dict[str, str]) -> str:
    query = urllib.parse.urlencode({"recover": token, "since": json.dumps(since)})
    return f"{cluster.url()}?{query}"




async def test_positions_are_given_in_one_order_across_shards(start_cluster: StartCluster) -> None:
    cluster = start_cluster(APP, SHARDS)
    rooms = [room_homed_on(0, "order"), room_homed_on(1, "order")]
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards([0, 1], per_shard=2)
        members = [placed[0][0], placed[1][0]]
        senders = [placed[0][1], placed[1][1]]
        for member in members:
            for room in rooms:
                await member.call("join", {"room": room}, timeout=10)
        for n in range(1, 21):
            for room in rooms:
                await senders[n % 2].call("say", {"room": room, "n": n}, timeout=10)
        for member in members:
            got = await said(member, 40)
            for room in rooms:
                of_room = [envelope for envelope in got if envelope["room"] == room]
                assert [e["payload"]["n"] for e in of_room] == list(range(1, 21))
                assert contiguous(of_room, 1), positions(of_room)
        assert await quiet(members[0]) == [] and await quiet(members[1]) == []


async def test_a_kill_of_the_home_loses_nothing_and_a_member_recovers_from_the_copy(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(APP, SHARDS)
    room = room_homed_on(0, "killed")
    home_pid = cluster.pids[0]
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards({1: 3})
        member, sender, dropping = placed[1]
        await member.call("join", {"room": room}, timeout=10)
        token = await token_after_join(dropping, room)
        for n in range(1, 6):
            await sender.call("say", {"room": room, "n": n}, timeout=10)
        before = await said(member, 5)
        assert contiguous(before, 1)
        seen = await said(dropping, 2)  # it read two, then its connection dropped
        await dropping.drop()  # no close frame: a network drop

        os.kill(home_pid, signal.SIGKILL)
        # While the home is down a broadcast waits for its successor (never degraded: only
        # the home positions), which is rebuilt from shard 1's copy.
        for n in range(6, 9):
            await say_while_home_down(sender, room, n)
        await cluster.wait_ready(0, [home_pid], timeout=20)
        after = await said(member, 3)
        assert contiguous(before + after, 1), positions(before + after)
        assert await quiet(member) == []

        # The dropped member recovers from position 2: 3..8 replayed (3..5 positioned by the
        # killed home, kept only in the copy), then live traffic, once each.
        back = await pool.open(recover_url(cluster, token, {room: seen[-1]["pos"]}))
        assert back.greeting["recovered"] is True
        assert back.conn_id == dropping.conn_id
        replayed = await said(back, 6)
        assert [e["payload"]["n"] for e in replayed] == [3, 4, 5, 6, 7, 8]
        await sender.call("say", {"room": room, "n": 9}, timeout=10)
        live = await said(back, 1)
        assert contiguous(seen + replayed + live, 1)
        assert await quiet(back) == []


async def test_a_rolling_reload_keeps_the_history_and_its_positions(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(APP, SHARDS)
    rooms = [room_homed_on(0, "reload"), room_homed_on(1, "reload")]
    old_pids = list(cluster.pids)
    async with Pool(cluster.url()) as pool:
        sender = await pool.open()
        watcher = await pool.open()
        await token_after_join(watcher, rooms[0])
        token = await token_after_join(watcher, rooms[1])  # the latest: both rooms
        for n in range(1, 6):
            for room in rooms:
                await sender.call("say", {"room": room, "n": n}, timeout=10)
        before = await said(watcher, 10)
        epochs = {e["room"]: Position.parse(e["pos"]).epoch for e in before}

        cluster.send(signal.SIGHUP)
        for shard in range(SHARDS):
            await cluster.wait_ready(shard, old_pids, timeout=30)
        await watcher.drop()
        await pool.discard(sender)
        sender = await pool.open()

        # The history from before the reload is still there (the successors were rebuilt
        # from it) and positions go on in the same epochs.
        since = {room: f"{epochs[room]}:2" for room in rooms}
        back = await pool.open(recover_url(cluster, token, since))
        assert back.greeting["recovered"] is True, (back.greeting, back.inbox.pending())
        replayed = await said(back, 6)
        for room in rooms:
            assert [e["payload"]["n"] for e in replayed if e["room"] == room] == [3, 4, 5]
        for room in rooms:
            await sender.call("say", {"room": room, "n": 6}, timeout=10)
        live = await said(back, 2)
        for room in rooms:
            of_room = [e for e in replayed + live if e["room"] == room]
            assert contiguous(of_room, 3), positions(of_room)
            assert positions(of_room)[0].epoch == epochs[room]
        assert await quiet(back) == []


async def test_a_connection_recovers_on_the_other_shard_again_and_again(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(APP, SHARDS)
    rooms = [room_homed_on(0, "move"), room_homed_on(1, "move")]
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards([0], per_shard=2)
        client, sender = placed[0]
        await token_after_join(client, rooms[0])
        token = await token_after_join(client, rooms[1])
        conn_id = client.conn_id
        last: dict[str, str] = {}
        received: dict[str, list[int]] = {room: [] for room in rooms}
        shards_seen = [0]
        n = 0
        while len(set(shards_seen)) < 2 or len(shards_seen) < 3:
            assert len(shards_seen) < 40, "never landed on the other shard"
            for _ in range(3):
                n += 1
                for room in rooms:
                    await sender.call("say", {"room": room, "n": n}, timeout=10)
            for envelope in await said(client, 6):
                received[envelope["room"]].append(envelope["payload"]["n"])
                last[envelope["room"]] = envelope["pos"]
            await client.drop()
            # Missed while away: two more each.
            for _ in range(2):
                n += 1
                for room in rooms:
                    await sender.call("say", {"room": room, "n": n}, timeout=10)
            await pool.discard(client)
            client = await pool.open(recover_url(cluster, token, last))
            assert client.greeting["recovered"] is True, client.greeting
            assert client.conn_id == conn_id
            shards_seen.append(client.greeting["shard"])
            for envelope in await said(client, 4):
                received[envelope["room"]].append(envelope["payload"]["n"])
                last[envelope["room"]] = envelope["pos"]
            refreshed = client.greeting.get("recovery", {}).get("token")
            token = refreshed or token
        for room in rooms:
            assert received[room] == list(range(1, n + 1))  # every message once, in order
        assert await quiet(client) == []


def scrape(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_the_history_gauges_sum_what_every_shard_keeps(start_cluster: StartCluster) -> None:
    cluster = start_cluster(APP, SHARDS, "--metrics-port", "0")
    async with asyncio.timeout(10):
        while (found := METRICS_LINE.search(cluster.stdout_text())) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    metrics_url = found.group(1)
    room = room_homed_on(0, "gauged")
    async with Pool(cluster.url()) as pool:
        sender = await pool.open()
        for n in range(1, 11):
            await sender.call("say", {"room": room, "n": n}, timeout=10)
    # The home's ring and the other shard's copy: 10 messages each.
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        samples = await asyncio.to_thread(scrape, metrics_url)
        if samples.get("socketspec_room_history_messages") == 20:
            break
        assert asyncio.get_running_loop().time() < deadline, samples
        await asyncio.sleep(0.2)
    assert samples["socketspec_room_history_bytes"] > 20 * len('{"event":"said"}')


async def test_a_broadcast_in_flight_when_its_home_is_killed_is_positioned_by_the_next(
    start_cluster: StartCluster,
) -> None:
    """The home is held (SIGSTOP) while the sender's ``say`` reaches it, then killed: the
    sender does not deliver it itself (only a home positions) but sends it again to the
    replacement, which positions it after what the killed home had."""
    cluster = start_cluster(APP, SHARDS)
    room = room_homed_on(0, "in-flight")
    home_pid = cluster.pids[0]
    async with Pool(cluster.url()) as pool:
        member, sender = (await pool.on_shards({1: 2}))[1]
        await member.call("join", {"room": room}, timeout=10)
        await sender.call("say", {"room": room, "n": 1}, timeout=10)
        first = await said(member, 1)
        os.kill(home_pid, signal.SIGSTOP)
        try:
            saying = asyncio.create_task(say_while_home_down(sender, room, 2))
            await asyncio.sleep(0.5)  # the Publish waits in the held home's socket
            assert not saying.done()
        finally:
            os.kill(home_pid, signal.SIGKILL)
            os.kill(home_pid, signal.SIGCONT)  # a no-op once it is dead; never left stopped
        await saying
        second = await said(member, 1)
        assert [e["payload"]["n"] for e in first + second] == [1, 2]
        assert contiguous(first + second, 1), positions(first + second)
        assert await quiet(member) == []
