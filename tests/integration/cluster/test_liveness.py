"""A shard whose event loop is blocked (a handler calling ``time.sleep``) stops reporting to
the supervisor; after ``--shard-timeout`` it gets SIGTERM, its replacement starts, and
SIGKILL follows the grace if it stays silent; the other shard serves its clients throughout,
and ``socketspec_shard_timeouts_total`` counts it. A loop that turns again within the grace
drains its clients (close 1001) instead of being killed."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request

from clusterkit import Pool, StartCluster, is_running
from prometheus_client.parser import text_string_to_metric_families

HUNG, HEALTHY = 0, 1
TIMEOUT = 2.0
SILENT = re.compile(
    r"shard (\d+) \(pid (\d+)\) sent no liveness report for ([\d.]+)s .*sending SIGTERM"
)
STILL_SILENT = re.compile(r"shard (\d+) \(pid (\d+)\) still silent ([\d.]+)s after SIGTERM")
RESUMED = re.compile(r"shard (\d+) \(pid (\d+)\) reports again after SIGTERM; it drains")


def shard_timeouts(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "socketspec_shard_timeouts_total":
                return float(sample.value)
    return 0.0


async def test_a_shard_with_a_blocked_loop_is_replaced_while_the_other_serves(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_hang_app:app", 2, "--shard-timeout", str(TIMEOUT))
    hung_pid = cluster.pids[HUNG]
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards([HUNG, HEALTHY])
        assert await asyncio.to_thread(shard_timeouts, cluster.port) == 0
        healthy = placed[HEALTHY][0]
        answered: list[float] = []  # how long each call on the healthy shard took
        stop = asyncio.Event()

        async def keep_calling() -> None:
            while not stop.is_set():
                started = time.monotonic()
                assert (await healthy.call("whoami", timeout=2))["shard"] == HEALTHY
                answered.append(time.monotonic() - started)
                await asyncio.sleep(0.05)

        caller = asyncio.create_task(keep_calling())
        await placed[HUNG][0].emit("hang", {"seconds": 60})
        hung_at = time.monotonic()
        found = await cluster.wait_stderr(SILENT, lambda m: int(m.group(2)) == hung_pid, 15)
        noticed_after = time.monotonic() - hung_at
        assert int(found.group(1)) == HUNG and float(found.group(3)) >= TIMEOUT
        assert noticed_after < TIMEOUT + 5, f"the silence was noticed after {noticed_after:.1f}s"
        replacement = await cluster.wait_ready(HUNG, [hung_pid], timeout=15)
        assert replacement != hung_pid and is_running(replacement)
        # TERM went unanswered (the loop is blocked): KILL after the grace.
        killed = await cluster.wait_stderr(
            STILL_SILENT, lambda m: int(m.group(2)) == hung_pid, 15
        )
        assert float(killed.group(3)) >= 2.5  # the grace (3 s), seen by a 1 s loop tick or less
        deadline = time.monotonic() + 5
        while is_running(hung_pid):
            assert time.monotonic() < deadline, "the hung shard was not killed"
            await asyncio.sleep(0.02)
        assert await placed[HUNG][0].wait_closed(10) is not None  # its clients are cut
        await asyncio.sleep(0.3)
        stop.set()
        await caller  # every call on the healthy shard was answered, within 2 s each
        assert len(answered) >= 20, answered

        revived = await pool.on_shards([HUNG])
        assert (await revived[HUNG][0].call("whoami"))["shard"] == HUNG
    assert await asyncio.to_thread(shard_timeouts, cluster.port) == 1


async def test_a_shard_whose_loop_turns_again_within_the_grace_drains_its_clients(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(
        "cluster_hang_app:app", 2, "--shard-timeout", str(TIMEOUT), "--graceful-timeout", "2"
    )
    hung_pid = cluster.pids[HUNG]
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards([HUNG, HEALTHY])
        client = placed[HUNG][0]
        # Silent after 1.5 to 2 s, TERM then; the loop turns at 3.5 s, within the 3 s grace.
        await client.emit("hang", {"seconds": TIMEOUT + 1.5})
        await cluster.wait_stderr(SILENT, lambda m: int(m.group(2)) == hung_pid, 15)
        await cluster.wait_stderr(RESUMED, lambda m: int(m.group(2)) == hung_pid, 15)
        assert (await client.receive("__server_shutdown__", timeout=10)) is not None
        assert await client.wait_closed(10) == 1001
        deadline = time.monotonic() + 10
        while is_running(hung_pid):
            assert time.monotonic() < deadline, "the drained shard did not exit"
            await asyncio.sleep(0.02)
        replacement = await cluster.wait_ready(HUNG, [hung_pid], timeout=15)
        assert is_running(replacement)
        revived = await pool.on_shards([HUNG])
        assert (await revived[HUNG][0].call("whoami"))["shard"] == HUNG
        assert (await placed[HEALTHY][0].call("whoami"))["shard"] == HEALTHY
    assert not STILL_SILENT.search(cluster.stderr_text())
    assert await asyncio.to_thread(shard_timeouts, cluster.port) == 1
