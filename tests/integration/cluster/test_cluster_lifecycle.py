"""The supervisor's signals over real processes: SIGTERM drains every shard and exits 0;
SIGHUP reloads the application code and replaces the shards one by one without refusing a
connection."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from clusterkit import Pool, StartCluster, is_running

from socketspec.client import ConnectRefused, connect
from socketspec.cluster.store import home_of

SHARDS = 3


async def test_sigterm_drains_every_shard_lets_handlers_finish_and_exits_0(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_rooms_app:app", SHARDS)
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(SHARDS), per_shard=2)
        clients = [c for shard_clients in placed.values() for c in shard_clients]
        # In-flight handlers on two shards, each sleeping about a second. (One reader per
        # client at a time: the ack is read after the shutdown notice, not by a parallel call.)
        busy = [placed[0][0], placed[1][0]]
        for client in busy:
            await client.emit("slow", {"seconds": 1.0}, ack="slow")
        for client in busy:
            await client.receive("slow_started", timeout=10)

        cluster.send(signal.SIGTERM)
        notices = await asyncio.gather(
            *(c.receive("__server_shutdown__", timeout=10) for c in clients)
        )
        assert all(n["reason"] == "shutdown" for n in notices), notices
        # Every shard has stopped accepting: nothing listens on the port any more.
        with pytest.raises((OSError, ConnectRefused)):
            await connect(cluster.url(), open_timeout=5)
        # The running handlers finish and their acks arrive before the close.
        acks = await asyncio.gather(*(c.receive_message("__ack__", timeout=15) for c in busy))
        assert [a["ack"] for a in acks] == ["slow", "slow"]
        assert [a["payload"] for a in acks] == [
            {"slept": 1.0, "shard": 0},
            {"slept": 1.0, "shard": 1},
        ]
        codes = await asyncio.gather(*(c.wait_closed(15) for c in clients))
        assert codes == [1001] * len(clients)

    assert await cluster.wait_exit(30) == 0
    assert cluster.leftovers() == []
    assert "Traceback" not in cluster.stderr_text()


APP_SOURCE = """
from typing import Any

from socketspec import Connection, SocketApp

app = SocketApp()


@app.on("version")
async def version(conn: Connection, payload: dict[str, Any]) -> str:
    return {version!r}
"""


def write_app(directory: Path, version: str) -> None:
    path = directory / "hot_reload_app.py"
    path.write_text(textwrap.dedent(APP_SOURCE.format(version=version)))
    stamp = time.time() + (0 if version == "v1" else 5)  # never the same mtime as before
    os.utime(path, (stamp, stamp))


async def test_sighup_reloads_the_code_without_refusing_a_connection(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    write_app(tmp_path, "v1")
    cluster = start_cluster("hot_reload_app:app", 2, cwd=tmp_path)
    old_pids = list(cluster.pids)
    outcomes: list[tuple[float, str, Any]] = []  # (time, "ok"/"error", result or error)
    reloaded_at: list[float] = []
    stop = asyncio.Event()

    async def open_connections() -> None:
        """Open connections one after another, each asking for the version."""
        while not stop.is_set():
            try:
                async with connect(cluster.url(), open_timeout=10) as client:
                    version = await client.call("version", timeout=10)
                outcomes.append((time.monotonic(), "ok", (version, client.greeting["shard"])))
            except Exception as exc:
                outcomes.append((time.monotonic(), "error", repr(exc)))

    loop_task = asyncio.create_task(open_connections())
    started = time.monotonic()
    await asyncio.sleep(0.5)
    write_app(tmp_path, "v2")
    hup_at = time.monotonic()
    cluster.send(signal.SIGHUP)
    new_pids = [await cluster.wait_ready(shard, old_pids, timeout=20) for shard in range(2)]
    assert not set(new_pids) & set(old_pids)
    # The reload is complete when the old shards have exited.
    deadline = time.monotonic() + 20
    while any(is_running(pid) for pid in old_pids):
        assert time.monotonic() < deadline, "the old shards did not stop"
        await asyncio.sleep(0.02)
    reloaded_at.append(time.monotonic())
    await asyncio.sleep(max(0.5, 3.0 - (time.monotonic() - started)))
    stop.set()
    await loop_task

    errors = [o for o in outcomes if o[1] == "error"]
    assert errors == [], f"{len(errors)} of {len(outcomes)} connections failed: {errors[:5]}"
    before = [o[2][0] for o in outcomes if o[0] < hup_at]
    after = [o[2][0] for o in outcomes if o[0] > reloaded_at[0]]
    assert before and set(before) == {"v1"}
    assert len(after) >= 5 and set(after) == {"v2"}, after
    assert {o[2][0] for o in outcomes} <= {"v1", "v2"}
    assert "rolling restart of 2 shard(s)" in cluster.stderr_text()

    # Every shard now runs the new code.
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards(range(2), per_shard=2)
        for clients in placed.values():
            for client in clients:
                assert await client.call("version") == "v2"


async def test_after_a_sighup_reload_rooms_still_span_every_shard(
    start_cluster: StartCluster,
) -> None:
    """The replaced shards link up with each other again: a room spans every shard, joins to
    rooms homed anywhere work, broadcasts reach every member."""
    cluster = start_cluster("cluster_rooms_app:app", SHARDS)
    old_pids = list(cluster.pids)
    hup_at = time.monotonic()
    cluster.send(signal.SIGHUP)
    for shard in range(SHARDS):
        await cluster.wait_ready(shard, old_pids, timeout=30)
    deadline = time.monotonic() + 30
    while any(is_running(pid) for pid in old_pids):
        assert time.monotonic() < deadline, "the old shards did not stop"
        await asyncio.sleep(0.02)
    took = time.monotonic() - hup_at

    rooms = {}
    for i in range(1000):
        rooms.setdefault(home_of(f"after-reload-{i}", SHARDS), f"after-reload-{i}")
        if len(rooms) == SHARDS:
            break
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(SHARDS))
        clients = [c for (c,) in placed.values()]
        for room in rooms.values():
            for client in clients:
                await client.call("join", {"room": room}, timeout=10)
            for sender in clients:
                await sender.call(
                    "say", {"room": room, "sender": "s", "n": sender.greeting["shard"]}
                )
                for client in clients:
                    got = await client.receive("said", timeout=5)
                    assert got == {"room": room, "sender": "s", "n": sender.greeting["shard"]}
            listed = await clients[0].call("members", {"room": room})
            assert {entry["id"] for entry in listed} == {c.conn_id for c in clients}
    # Each replacement links to the others at once: the rolling restart does not wait out a
    # link timeout per shard.
    assert took < 4.0, f"the rolling restart of {SHARDS} shards took {took:.1f}s"
