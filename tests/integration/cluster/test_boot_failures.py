"""How ``socketspec-cluster`` refuses to start: a port it cannot bind stops the whole
cluster quickly with one reason and a non-zero exit (no restart loop); a bad app or
``--workers 0`` is one line on stderr and exit code 2; ``--workers auto`` is one shard per
core."""

from __future__ import annotations

import os
import socket

from clusterkit import Pool, StartCluster, run_cli


def test_a_port_held_without_so_reuseport_stops_the_cluster_with_one_reason() -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(8)
        port = holder.getsockname()[1]
        run = run_cli(["cluster_rooms_app:app", "--workers", "2", "--port", str(port)])
    finally:
        holder.close()
    code, stderr, took = run.code, run.stderr, run.took
    assert code != 0, stderr
    reasons = [line for line in stderr.splitlines() if line.startswith("socketspec-cluster:")]
    assert len(reasons) == 1, stderr
    assert "error" in reasons[0] and "Address already in use" in reasons[0], reasons
    assert "restarting in" not in stderr, stderr
    assert took < 10, f"took {took:.1f}s to give up"
    assert run.leftovers == [], "shards outlived the supervisor"


def test_an_app_that_fails_validation_is_one_line_and_exit_2() -> None:
    code, stderr, *_ = run_cli(["cluster_duplicate_app:app", "--workers", "2", "--port", "0"])
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), stderr
    assert "error" in stderr and "twice" in stderr, stderr


def test_workers_0_is_one_line_and_exit_2() -> None:
    code, stderr, *_ = run_cli(["cluster_rooms_app:app", "--workers", "0", "--port", "0"])
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "--workers" in stderr, stderr


async def test_workers_auto_starts_one_shard_per_core(start_cluster: StartCluster) -> None:
    cores = os.cpu_count() or 1
    cluster = start_cluster("cluster_rooms_app:app", "auto")
    assert len(cluster.pids) == cores
    assert f"{cores} shard(s)" in cluster.stdout_text()
    # The announce line can be read before the last shard's ready line is.
    for shard in range(cores):
        await cluster.wait_ready(shard, (), timeout=10)
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards(range(cores))
        for shard, (client,) in placed.items():
            assert (await client.call("whoami"))["shard"] == shard
