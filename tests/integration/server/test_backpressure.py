"""A client that stops reading is closed with 4008 (slow consumer) while another member of
the same room keeps receiving every broadcast, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from rawws import RawWS
from shardkit import EchoApp, assert_serving, echo_app

from socketspec import Connection
from socketspec.client import connect
from socketspec.server.outbound import KERNEL_UNSENT_LIMIT, TRANSPORT_HIGH_WATER

KIB = 1024
BATCH = 500
MAX_MESSAGES = 40_000  # ~40 MB: far beyond any socket buffer a loopback peer can hold


def hall_app() -> tuple[EchoApp, asyncio.Queue[str]]:
    """``enter`` joins the hall (the ids of those who entered go to the queue); ``say``
    broadcasts its payload to the hall, in the order a connection sent them."""
    app = echo_app()
    entered: asyncio.Queue[str] = asyncio.Queue()

    @app.on("enter")
    async def enter(conn: Connection) -> str:
        await app.rooms.join(conn, "hall")
        entered.put_nowait(conn.id)
        return conn.id

    @app.on("say", ordered=True)
    async def say(conn: Connection, payload: dict[str, Any]) -> None:
        await app.rooms.broadcast("hall", "said", payload)

    return app, entered


def dropped_bytes() -> float:
    return REGISTRY.get_sample_value("socketspec_outbound_dropped_bytes_total") or 0.0


def slow_consumer_closes() -> float:
    """The process-wide counter (an in-process shard records into this process's registry)."""
    return REGISTRY.get_sample_value("socketspec_slow_consumer_closes_total") or 0.0


async def test_a_client_that_stops_reading_is_closed_4008_and_the_room_keeps_receiving(
    start_shard,
) -> None:
    slow_closes_before = slow_consumer_closes()
    app, entered = hall_app()
    # close_timeout: the server waits that long for the stalled client's closing handshake
    shard = await start_shard(app, max_outbound=64 * KIB, close_timeout=20)
    url = f"ws://127.0.0.1:{shard.port}/ws"
    # The stalled client: completes the handshake, joins the hall, then never reads again.
    stalled = await RawWS.open(shard.port, rcvbuf=4096)
    stalled.send_event("enter", ack=1)
    async with connect(url) as reader, connect(url) as speaker:
        await reader.call("enter")
        await speaker.call("enter")
        async with asyncio.timeout(10):
            ids = {await entered.get() for _ in range(3)}
        (stalled_id,) = ids - {reader.conn_id, speaker.conn_id}
        pad = "p" * 1000
        sent = 0
        received: list[int] = []
        while stalled_id not in app.disconnects:
            assert sent < MAX_MESSAGES, "the stalled client was never closed"
            for _ in range(BATCH):
                await speaker.emit("say", {"n": sent, "pad": pad})
                sent += 1
            # the reader keeps up with every batch
            for _ in range(BATCH):
                received.append((await reader.receive("said", timeout=10))["n"])
        assert app.disconnects[stalled_id] == "slow_consumer"
        assert slow_consumer_closes() == slow_closes_before + 1
        assert received == list(range(sent))
        # the room lost the stalled member and still works for the others
        assert {m.id for m in await app.rooms.members("hall")} == {
            reader.conn_id,
            speaker.conn_id,
        }
        await speaker.emit("say", {"n": sent, "pad": ""})
        assert (await reader.receive("said"))["n"] == sent
        assert not reader.closed and not speaker.closed
    # When the stalled client reads again it finds the backlog, then the Close frame.
    assert (await stalled.read_close(timeout=15)).close_code == 4008
    await stalled.aclose()
    await assert_serving(shard.port)


async def test_a_client_that_keeps_reading_is_never_closed_for_slowness(start_shard) -> None:
    slow_closes_before = slow_consumer_closes()
    app, _ = hall_app()
    shard = await start_shard(app, max_outbound=64 * KIB)
    url = f"ws://127.0.0.1:{shard.port}/ws"
    async with connect(url) as reader, connect(url) as speaker:
        await reader.call("enter")
        await speaker.call("enter")
        big = "b" * (4 * KIB)
        # 1.2 MB through each member with 64 KiB allowed queued: the reader reads each
        # burst of 32 KiB before the next one is sent, so what waits for it stays bounded.
        for first in range(0, 300, 8):
            for n in range(first, first + 8):
                await speaker.emit("say", {"n": n, "pad": big})
            for n in range(first, first + 8):
                assert (await reader.receive("said", timeout=10))["n"] == n
        assert slow_consumer_closes() == slow_closes_before
        assert app.disconnects == {}


async def test_a_stalled_reader_that_reads_again_after_the_grace_finds_4008(
    start_shard,
) -> None:
    """At the default --max-outbound (1 MiB), what stands between a stalled reader and its
    4008 close frame is bounded by the transport's high-water mark and the kernel's unsent
    limit, far below the megabyte the server had queued for it (that is dropped, and
    counted). The close frame is in the kernel's hands before the connection is dropped at
    close_timeout, so a client that reads again only after that still gets it."""
    app, entered = hall_app()
    shard = await start_shard(app, max_outbound=1024 * KIB, close_timeout=1)
    url = f"ws://127.0.0.1:{shard.port}/ws"
    dropped_before = dropped_bytes()
    stalled = await RawWS.open(shard.port, rcvbuf=4096)
    stalled.send_event("enter", ack=1)
    async with connect(url) as speaker:
        await speaker.call("enter")
        async with asyncio.timeout(10):
            ids = {await entered.get() for _ in range(2)}
        (stalled_id,) = ids - {speaker.conn_id}
        pad = "p" * 1000
        sent = 0
        while stalled_id not in app.disconnects:
            assert sent < MAX_MESSAGES, "the stalled client was never closed"
            for _ in range(BATCH):
                await speaker.emit("say", {"n": sent, "pad": pad})
                sent += 1
            for _ in range(BATCH):  # the speaker reads its own copies
                await speaker.receive("said", timeout=10)
        assert app.disconnects[stalled_id] == "slow_consumer"
    assert dropped_bytes() - dropped_before > 512 * KIB  # most of it never left the server
    await asyncio.sleep(2)  # past close_timeout: the server has dropped the connection
    # The stalled client reads again: a bounded backlog, the Close frame, then the TCP end.
    before_close = 0
    while True:
        frame = await stalled.read_frame(timeout=10)
        if frame.opcode == 0x8:
            break
        before_close += len(frame.payload)
    assert frame.close_code == 4008
    # What the server may have handed over, plus what sits on the client's side of the wire:
    # its socket's receive buffer (the kernel doubles the 4 KiB asked for) and its stream
    # reader's buffer (up to twice its 4 KiB limit before it stops reading).
    client_side = 2 * 4096 + 2 * 4096
    bound = KERNEL_UNSENT_LIMIT + TRANSPORT_HIGH_WATER + 64 * KIB + client_side
    assert before_close < bound, before_close
    assert await stalled.read_eof(timeout=10) == b""
    await stalled.aclose()
    await assert_serving(shard.port)
