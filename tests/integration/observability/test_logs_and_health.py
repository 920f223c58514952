"""``--log-json`` lines, ``/healthz`` and ``/readyz`` per shard (and while a shard is dead),
and ``--no-metrics``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
from clusterkit import Pool
from obskit import METRICS_AT, ObsCluster, http_get, http_raw, listening_ports

from socketspec.client import ErrorReply, connect


async def test_json_logs_carry_level_shard_and_the_request_id_of_the_error_envelope(
    start_cluster: Any,
) -> None:
    cluster: ObsCluster = start_cluster("obs_app:quiet", 2, "--log-json")
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards({0: 1, 1: 1})
        replies: dict[int, dict[str, Any]] = {}
        for shard, (client,) in placed.items():
            with pytest.raises(ErrorReply) as raised:
                await client.call("boom")
            assert raised.value.code == "HANDLER_ERROR"
            replies[shard] = raised.value.payload
            assert replies[shard]["request_id"], replies[shard]

        process = cluster.process
        for shard, (client,) in placed.items():
            request_id = replies[shard]["request_id"]
            deadline = time.monotonic() + 10
            while True:
                records = [
                    json.loads(line)
                    for line in process.stderr_text().splitlines()
                    if request_id in line
                ]
                raised_records = [r for r in records if r.get("level") == "error"]
                if raised_records or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert len(raised_records) == 1, (request_id, process.stderr_text()[-3000:])
            record = raised_records[0]
            assert "raised" in record["message"] and "boom" in record["message"], record
            assert record["shard"] == shard, record
            assert record["conn_id"] == client.conn_id, record
            assert record["request_id"] == request_id, record
            assert record["event"] == "boom", record
            assert "RuntimeError: boom on purpose" in record.get("exc_info", ""), record
            assert isinstance(record["time"], str) and record["logger"], record

    # every line on stderr is one JSON object with a level and a shard ("-": the supervisor)
    lines = [line for line in process.stderr_text().splitlines() if line.strip()]
    assert lines
    shards_seen = set()
    for line in lines:
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert "shard" in record, line
        shards_seen.add(record["shard"])
    assert {"-", 0, 1} <= shards_seen, shards_seen
    ready = [json.loads(line) for line in lines if "ready (pid" in line]
    assert ready and all(r["shard"] == "-" and r["level"] == "info" for r in ready), ready


async def shard_answers(port: int, path: str, shard: int, timeout: float = 15.0) -> Any:
    """(status, body) of ``path`` as answered by ``shard`` (new connections land on any)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await asyncio.to_thread(http_get, port, path)
        if body.get("shard") == shard:
            return status, body
        assert time.monotonic() < deadline, f"shard {shard} never answered {path}"
        await asyncio.sleep(0.01)


async def test_healthz_and_readyz_report_every_shard_and_a_dead_one(start_cluster: Any) -> None:
    cluster: ObsCluster = start_cluster("obs_app:quiet", 2)
    process = cluster.process
    port = cluster.port
    both_up = {"0": "up", "1": "up"}
    for shard in (0, 1):
        status, body = await shard_answers(port, "/healthz", shard)
        assert (status, body["status"], body["shards"]) == (200, "ok", both_up), body
        status, body = await shard_answers(port, "/readyz", shard)
        assert (status, body["ready"], body["shards"]) == (200, True, both_up), body

    # Shard 1 dies. The supervisor is held stopped meanwhile, so that its replacement does
    # not come up before shard 0 has been asked (a replacement takes well under a second).
    dead = process.pids[1]
    os.kill(process.proc.pid, signal.SIGSTOP)
    try:
        os.kill(dead, signal.SIGKILL)
        one_down = {"0": "up", "1": "down"}
        deadline = time.monotonic() + 10
        while True:
            status, body = await asyncio.to_thread(http_get, port, "/readyz")
            if body["shards"] == one_down or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert (status, body["ready"], body["shard"], body["shards"]) == (
            503,
            False,
            0,
            one_down,
        ), body
        for _ in range(3):  # and it stays so while no replacement is there
            status, body = await asyncio.to_thread(http_get, port, "/readyz")
            assert (status, body["shard"], body["shards"]) == (503, 0, one_down), body
            status, body = await asyncio.to_thread(http_get, port, "/healthz")
            assert (status, body["status"], body["shards"]) == (200, "ok", one_down), body
            await asyncio.sleep(0.1)
    finally:
        os.kill(process.proc.pid, signal.SIGCONT)

    replacement = await process.wait_ready(1, [dead], timeout=30)
    assert replacement != dead
    for shard in (0, 1):
        deadline = time.monotonic() + 15
        while True:
            status, body = await shard_answers(port, "/readyz", shard)
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert (status, body["ready"], body["shards"]) == (200, True, both_up), body


async def test_no_metrics_serves_no_metrics_endpoint_and_still_serves_clients(
    start_cluster: Any,
) -> None:
    # with metrics (the control): /metrics answers on the cluster's port
    measured: ObsCluster = start_cluster("obs_app:quiet", 1)
    assert measured.metrics_port == measured.port
    assert (await asyncio.to_thread(http_raw, measured.port, "/metrics"))[0] == 200

    cluster: ObsCluster = start_cluster("obs_app:quiet", 1, "--no-metrics")
    process = cluster.process
    deadline = time.monotonic() + 10
    while "health at" not in process.stdout_text():
        assert time.monotonic() < deadline, process.stdout_text()
        await asyncio.sleep(0.02)
    async with connect(cluster.url()) as client:
        assert (await client.call("whoami"))["shard"] == 0
        await client.call("join", {"room": "r"})
        with pytest.raises(ErrorReply):
            await client.call("boom")
    assert not METRICS_AT.search(process.stdout_text()), process.stdout_text()
    assert "metrics at" not in process.stdout_text() + process.stderr_text()
    assert listening_ports(process.proc.pid) == set()
    assert (await asyncio.to_thread(http_raw, cluster.port, "/metrics"))[0] == 404
    status, body = await asyncio.to_thread(http_get, cluster.port, "/readyz")
    assert (status, body["ready"]) == (200, True), body
