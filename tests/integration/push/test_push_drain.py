"""A publish API request in flight when its shard drains, over a real 2-shard cluster: taken
(head and part of its body read) before SIGTERM or SIGHUP, the rest of its body sent during
the drain, it gets a complete answer, and the rooms' members got exactly what the answer
says. The other shard, with nothing in flight, finishes its drain at once; the request's
shard keeps its connections open until the request is answered. A request whose head
arrives once the drain began, and one whose body is still missing when the graceful timeout
ends, get 503 and send nothing."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
from clusterkit import ClusterProcess, Pool
from pushkit import KEY, launch

from socketspec.client import Client
from socketspec.cluster.store import home_of

SHARDS = 2
PER_SHARD = 2
MESSAGES = 40


def rooms_homed_on_each_shard() -> list[str]:
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(home_of(f"drain-{i}", SHARDS), f"drain-{i}")
    return [found[shard] for shard in range(SHARDS)]


def batch_body(rooms: list[str]) -> bytes:
    messages = [
        {"room": rooms[n % len(rooms)], "event": "tick", "payload": {"n": n}}
        for n in range(MESSAGES)
    ]
    return json.dumps({"messages": messages}).encode()


def head_of(body: bytes) -> bytes:
    return (
        "POST /api/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


async def start_request(port: int, data: bytes) -> tuple[asyncio.StreamReader, Any]:
    """A connection to the API with ``data`` (part of a request) sent; the rest waits."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def read_answer(reader: asyncio.StreamReader, writer: Any) -> tuple[int, Any]:
    """The status and JSON of the answer, read until the server closes: a cut connection
    shows as an empty or partial answer."""
    raw = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), f"no complete answer: {raw!r}"
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    assert len(content) == int(lengths[0].split(b":")[1]), f"the answer was cut: {raw!r}"
    return int(head.split(b" ")[1]), json.loads(content)


async def members_in(pool: Pool, rooms: list[str]) -> dict[int, list[Client]]:
    """``PER_SHARD`` connections on each shard, each a member of every one of ``rooms``."""
    placed = await pool.on_shards(range(SHARDS), PER_SHARD)
    for clients in placed.values():
        for client in clients:
            for room in rooms:
                await client.call("join", {"room": room}, timeout=10)
    return placed


async def wait_refused(port: int, timeout: float = 10.0) -> None:
    """Until no shard accepts connections: every shard closed its listener (its drain
    began; the publish API refuses new requests from that moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        assert loop.time() < deadline, "the shards still accept connections"
        await asyncio.sleep(0.02)


def ticks(client: Client) -> list[int]:
    """The ``tick`` numbers a (closed) client received."""
    return [m["payload"]["n"] for m in client.inbox.pending() if m.get("event") == "tick"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
async def test_batch_in_flight_through_a_drain_is_answered_whole(signum: int) -> None:
    """SIGTERM drains both shards at once; SIGHUP drains each old instance once its
    replacement serves."""
    cluster: ClusterProcess = launch("--api-key", KEY, "--graceful-timeout", "10")
    rooms = rooms_homed_on_each_shard()
    body = batch_body(rooms)
    try:
        async with Pool(cluster.url(), token=True, users="drain") as pool:
            placed = await members_in(pool, rooms)
            members = [client for clients in placed.values() for client in clients]
            half = len(body) // 2
            reader, writer = await start_request(cluster.port, head_of(body) + body[:half])
            await asyncio.sleep(0.5)  # the shard reads the head and hands it to the API
            cluster.send(signum)
            # The shard with nothing in flight drains at once and closes its connections; the
            # one holding the request keeps its own open until the request is answered.
            done, _ = await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed(timeout=8)) for c in members],
                timeout=8,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert done, "no shard finished its drain"
            await asyncio.sleep(0.5)
            open_shards = {s for s, clients in placed.items() if not any(c.closed for c in clients)}
            closed_shards = {s for s, clients in placed.items() if all(c.closed for c in clients)}
            assert len(open_shards) == 1 and len(closed_shards) == 1, (open_shards, closed_shards)
            (holding,) = open_shards
            for client in placed[holding]:  # its drain began, the request still in flight
                await client.receive("__server_shutdown__", timeout=10)
            writer.write(body[half:])
            status, answer = await read_answer(reader, writer)
            assert status == 200, answer
            results = answer["results"]
            assert len(results) == MESSAGES
            for client in placed[holding]:
                await client.wait_closed(timeout=15)
            # Each message reached exactly as many members as its result says (the holding
            # shard's members; the drained shard's had left), and an unsent one reached none.
            for n, result in enumerate(results):
                receivers = sum(n in ticks(client) for client in members)
                assert receivers == result.get("delivered", 0), (n, result, receivers)
            assert any(result.get("delivered") == PER_SHARD for result in results), results
        if signum == signal.SIGTERM:
            assert await cluster.wait_exit(20) == 0
    finally:
        cluster.kill()


async def test_request_after_the_drain_began_or_past_its_timeout_gets_503() -> None:
    """A request whose head arrives once the drain began is refused; one whose body has not
    arrived when the graceful timeout ends is refused then: 503, and nothing is sent."""
    cluster: ClusterProcess = launch("--api-key", KEY, "--graceful-timeout", "1")
    rooms = rooms_homed_on_each_shard()
    body = batch_body(rooms)
    try:
        async with Pool(cluster.url(), token=True, users="late") as pool:
            placed = await members_in(pool, rooms)
            members = [client for clients in placed.values() for client in clients]
            late = await start_request(cluster.port, b"")  # connected, its head not sent
            stalled = await start_request(cluster.port, head_of(body) + body[:10])
            await asyncio.sleep(0.5)  # the shard reads the stalled request's head
            cluster.send(signal.SIGTERM)
            await wait_refused(cluster.port)
            late[1].write(head_of(body) + body)
            status, answer = await read_answer(*late)
            assert (status, answer["error"]) == (503, "unavailable"), answer
            assert "nothing was sent" in answer["reason"]
            status, answer = await read_answer(*stalled)
            assert (status, answer["error"]) == (503, "unavailable"), answer
            for client in members:
                await client.wait_closed(timeout=15)
                assert ticks(client) == []
        assert await cluster.wait_exit(20) == 0
    finally:
        cluster.kill()
