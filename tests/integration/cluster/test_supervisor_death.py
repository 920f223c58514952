"""Shards do not outlive their supervisor: killed with SIGKILL, it leaves no orphan serving."""

from __future__ import annotations

import asyncio
import signal

from clusterkit import StartCluster, is_running


async def test_shards_stop_when_the_supervisor_is_killed(start_cluster: StartCluster) -> None:
    cluster = start_cluster("cluster_rooms_app:app", 2)
    shard_pids = list(cluster.pids)
    assert all(is_running(pid) for pid in shard_pids)
    cluster.send(signal.SIGKILL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while any(is_running(pid) for pid in shard_pids):
        assert loop.time() < deadline, "a shard kept running after its supervisor died"
        await asyncio.sleep(0.05)
