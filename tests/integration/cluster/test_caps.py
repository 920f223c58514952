"""Admission over a real 2-shard cluster: ``--max-connections`` answers 503, ``--max-per-ip``
429, both with Retry-After and counted; a slot frees when its connection closes; and 5,000
half-open handshakes (slow loris) take no slot, are dropped at ``--handshake-timeout`` and do
not slow a normal client down."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from clusterkit import METRICS_LINE, ClusterProcess, StartCluster
from prometheus_client.parser import text_string_to_metric_families
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request, TextMessage

from socketspec.client import connect

APP = "cluster_echo_app:app"
STALLS = 5000
STALL_CLIENTS = Path(__file__).resolve().parent / "stall_clients.py"


class Upgrade(NamedTuple):
    status: int  # 101 when admitted
    headers: dict[str, str]
    body: str
    shard: int | None  # from the greeting, when admitted
    writer: asyncio.StreamWriter | None  # the open connection, when admitted


async def upgrade(port: int, path: str, source: str = "127.0.0.1") -> Upgrade:
    """An upgrade from the address ``source`` (any 127.x.y.z is this host): the refusal, or
    the open connection and the shard its greeting names."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
    status, headers, body = 0, {}, b""
    async with asyncio.timeout(10):
        while True:
            data = await reader.read(65536)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        writer.close()
                        return Upgrade(status, headers, body.decode(), None, None)
                elif isinstance(event, AcceptConnection):
                    status = 101
                elif isinstance(event, TextMessage):
                    greeting = json.loads(event.data)
                    assert greeting["event"] == "__connect__", greeting
                    return Upgrade(101, {}, "", int(greeting["payload"]["shard"]), writer)
            assert data, f"the server closed the upgrade without an answer (status {status})"


def scrape(cluster: ClusterProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = METRICS_LINE.search(cluster.stdout_text())
    assert found, cluster.stdout_text()
    with urllib.request.urlopen(found.group(1), timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def wait_metric(cluster: ClusterProcess, name: str, expected: float, **labels: str) -> None:
    """Shards fold some counts into their metrics once a second: scrape until it shows."""
    key = (name, frozenset(labels.items()))
    deadline = time.monotonic() + 10
    while (found := (await asyncio.to_thread(scrape, cluster)).get(key, 0.0)) != expected:
        assert time.monotonic() < deadline, f"{name}{labels} is {found}, expected {expected}"
        await asyncio.sleep(0.2)


def close_all(upgrades: list[Upgrade]) -> None:
    for held in upgrades:
        if held.writer is not None:
            held.writer.transport.abort()


async def test_past_max_connections_an_upgrade_is_answered_503_and_counted(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(APP, 2, "--max-connections", "2")
    held: list[Upgrade] = []
    refused: list[Upgrade] = []
    try:
        # Connections land on either shard: open until each shard holds its 2.
        for _ in range(200):
            if len(held) == 4:
                break
            attempt = await upgrade(cluster.port, cluster.path)
            (held if attempt.status == 101 else refused).append(attempt)
        assert sorted(h.shard for h in held) == [0, 0, 1, 1]
        for _ in range(10):  # both shards are full: every upgrade now is refused
            refused.append(await upgrade(cluster.port, cluster.path))
        assert {r.status for r in refused} == {503}
        assert all(r.headers.get("retry-after") == "1" for r in refused)
        assert "capacity" in refused[-1].body
        await wait_metric(
            cluster,
            "socketspec_connections_refused_total",
            len(refused),
            reason="max_connections",
        )
        # A closed connection gives its slot back: its shard admits again.
        freed = held.pop()
        close_all([freed])
        for _ in range(200):
            attempt = await upgrade(cluster.port, cluster.path)
            if attempt.status == 101:
                held.append(attempt)
                break
            await asyncio.sleep(0.01)  # the server may not have seen the close yet
        assert held[-1].status == 101 and held[-1].shard == freed.shard
    finally:
        close_all(held)


async def test_past_max_per_ip_an_upgrade_is_answered_429_and_counted(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(APP, 2, "--max-per-ip", "1")
    held: list[Upgrade] = []
    refused: list[Upgrade] = []
    try:
        # The cap is per shard: 127.0.0.2 gets one connection on each.
        for _ in range(200):
            if len(held) == 2:
                break
            attempt = await upgrade(cluster.port, cluster.path, source="127.0.0.2")
            (held if attempt.status == 101 else refused).append(attempt)
        assert sorted(h.shard for h in held) == [0, 1]
        for _ in range(10):
            refused.append(await upgrade(cluster.port, cluster.path, source="127.0.0.2"))
        assert {r.status for r in refused} == {429}
        assert all(r.headers.get("retry-after") == "1" for r in refused)
        assert "127.0.0.2" in refused[-1].body
        # Other addresses are not affected.
        for source in ("127.0.0.1", "127.0.0.3"):
            other = await upgrade(cluster.port, cluster.path, source=source)
            held.append(other)
            assert other.status == 101
        await wait_metric(
            cluster, "socketspec_connections_refused_total", len(refused), reason="max_per_ip"
        )
    finally:
        close_all(held)


@pytest.fixture
def open_files_for_stalls() -> Iterator[None]:
    """The test and the cluster it starts (which inherits the limit) each hold a socket per
    stalled request: raise the soft limit on open files, restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = STALLS + 1024
    assert hard == resource.RLIM_INFINITY or hard >= wanted, (
        f"the hard limit on open files ({hard}) is below the {wanted} this test needs"
    )
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def test_stalled_half_requests_are_dropped_at_the_handshake_timeout_without_delaying_others(
    start_cluster: StartCluster, open_files_for_stalls: None
) -> None:
    timeout = 3.0
    # Caps far below the stall count: half-open requests take no slot.
    cluster = start_cluster(
        APP, 2, "--handshake-timeout", str(timeout), "--max-connections", "100",
        "--max-per-ip", "20",
    )  # fmt: skip
    latencies: list[float] = []
    stop = asyncio.Event()

    async def echo_loop() -> None:
        async with connect(cluster.url()) as client:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                assert await client.call("echo", {"n": n}, timeout=5) == {"n": n}
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.002)

    echoing = asyncio.create_task(echo_loop())
    stallers = await asyncio.create_subprocess_exec(
        sys.executable,
        str(STALL_CLIENTS),
        str(cluster.port),
        cluster.path,
        str(STALLS),
        "20",
        stdout=subprocess.PIPE,
    )
    try:
        assert stallers.stdout is not None
        opened = json.loads(await stallers.stdout.readline())
        assert opened["opened"] == STALLS, opened
        # While the 5,000 hang, a new client connects and is answered at once.
        started = time.perf_counter()
        async with connect(cluster.url(), open_timeout=2) as newcomer:
            assert await newcomer.call("echo", {"new": True}, timeout=2) == {"new": True}
        assert time.perf_counter() - started < 2
        ended = json.loads(await stallers.stdout.readline())
        await asyncio.sleep(0.5)  # echo on past the drop of the stalled requests
        stop.set()
        await asyncio.wait_for(echoing, 10)
    finally:
        stop.set()
        if stallers.returncode is None:
            stallers.kill()
        await stallers.wait()
        if not echoing.done():
            echoing.cancel()
    # Every stalled request was dropped by the server at its deadline, none answered.
    assert ended["closed_by_server"] == STALLS and ended["still_open"] == 0, ended
    assert timeout - 0.1 <= ended["min_after"] and ended["max_after"] < timeout + 3, ended
    await wait_metric(cluster, "socketspec_handshake_timeouts_total", STALLS)
    # The normal client was not held up: before, during and after the stall.
    assert len(latencies) > 200, len(latencies)
    assert percentile(latencies, 0.99) < 0.1, sorted(latencies)[-20:]
