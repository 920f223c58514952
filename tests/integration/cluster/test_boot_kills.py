"""A shard killed while it boots (the app used makes every shard's boot last 0.3 s, so the
kill cannot miss it on a loaded machine) stops the cluster only on
the cluster's very first boot. A replacement killed while booting, after a kill -9 of its
predecessor, is logged and started again with backoff while the other shard keeps serving;
a new shard killed while booting during a SIGHUP reload leaves the old shards serving, and
the next SIGHUP reloads."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

from clusterkit import (
    BOOT_FAILED,
    ClusterProcess,
    Pool,
    StartCluster,
    is_running,
    kill_next_child,
)

from socketspec.client import Client

HEALTHY, VICTIM = 0, 1


async def still_served(client: Client, shard: int) -> None:
    assert (await client.call("whoami", timeout=5))["shard"] == shard


async def test_a_shard_killed_during_the_first_boot_stops_the_cluster() -> None:
    cluster = ClusterProcess(["cluster_slow_boot_app:app", "--workers", "2", "--port", "0"])
    try:
        await asyncio.to_thread(kill_next_child, cluster.proc.pid, [], 30)
        assert await cluster.wait_exit(30) == 1
        await asyncio.sleep(0.1)  # the stderr reader catches up
        reasons = [
            line
            for line in cluster.stderr_text().splitlines()
            if line.startswith("socketspec-cluster:")
        ]
        # Which shard the first child found is depends on the fork order under load.
        assert len(reasons) == 1 and re.search(r"shard [01] failed to boot", reasons[0]), reasons
        assert cluster.leftovers() == []
    finally:
        cluster.kill()


async def test_a_replacement_killed_while_booting_is_retried_with_backoff(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_slow_boot_app:app", 2)
    supervisor = cluster.proc.pid
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards([HEALTHY])
        healthy = placed[HEALTHY][0]
        known = set(cluster.pids)
        os.kill(cluster.pids[VICTIM], signal.SIGKILL)
        # Its replacement, then the replacement's replacement: each killed while it boots.
        killed = []
        for _ in range(2):
            pid = await asyncio.to_thread(kill_next_child, supervisor, known, 15)
            known.add(pid)
            killed.append(pid)
            await still_served(healthy, HEALTHY)
        failures = [
            await cluster.wait_stderr(BOOT_FAILED, lambda m, p=pid: int(m.group(2)) == p, 10)
            for pid in killed
        ]
        assert [int(f.group(1)) for f in failures] == [VICTIM, VICTIM]
        assert [f.group(3) for f in failures] == ["exited with code -9"] * 2
        delays = [float(f.group(4)) for f in failures]
        assert 0 < delays[0] < delays[1], delays  # backed off, and more each time

        # The cluster lives on: the next replacement boots and serves.
        replacement = await cluster.wait_ready(VICTIM, known, timeout=20)
        assert is_running(supervisor) and is_running(replacement)
        await still_served(healthy, HEALTHY)
        revived = await pool.on_shards([VICTIM])
        await still_served(revived[VICTIM][0], VICTIM)
    assert "socketspec-cluster: error" not in cluster.stderr_text()


async def test_a_reload_whose_new_shard_is_killed_while_booting_keeps_the_old_shards(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_slow_boot_app:app", 2)
    supervisor = cluster.proc.pid
    old = list(cluster.pids)
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards([HEALTHY, VICTIM])
        cluster.send(signal.SIGHUP)
        doomed = await asyncio.to_thread(kill_next_child, supervisor, old, 15)
        await cluster.wait_stderr(
            re.compile(r"reload \(SIGHUP\) failed, keeping the old shards"), lambda m: True, 10
        )
        assert f"pid {doomed}" in cluster.stderr_text()
        # The old shards still serve their clients and nothing else was started.
        for shard in (HEALTHY, VICTIM):
            await still_served(placed[shard][0], shard)
        await asyncio.sleep(0.5)
        assert all(is_running(pid) for pid in old)
        assert children_ready_after(cluster, old) == []

        # The next SIGHUP reloads every shard.
        cluster.send(signal.SIGHUP)
        new = [await cluster.wait_ready(shard, [*old, doomed], timeout=20) for shard in (0, 1)]
        deadline = time.monotonic() + 20
        while any(is_running(pid) for pid in old):
            assert time.monotonic() < deadline, "the old shards did not stop"
            await asyncio.sleep(0.02)
        assert all(is_running(pid) for pid in new) and is_running(supervisor)


def children_ready_after(cluster: ClusterProcess, old: list[int]) -> list[str]:
    """'ready' lines of shards that are not ``old``."""
    return [
        line
        for line in cluster.stderr_text().splitlines()
        if " ready (pid " in line and not any(f"(pid {pid})" in line for pid in old)
    ]
