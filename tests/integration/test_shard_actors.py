"""The shard's connection actors over real sockets: frame-once broadcast, mailbox backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from socketspec import Connection, SocketApp
from socketspec.client import Client, connect
from socketspec.server import frames
from socketspec.server.config import ServerConfig
from socketspec.server.protocol import WebSocketProtocol
from socketspec.server.shard import Shard


async def started(app: SocketApp, **settings: object) -> Shard:
    shard = Shard(app, ServerConfig(port=0, **settings))  # type: ignore[arg-type]
    await shard.start()
    return shard


@pytest.fixture
async def room_app() -> AsyncIterator[tuple[SocketApp, Shard]]:
    app = SocketApp()

    @app.on("enter")
    async def enter(conn: Connection) -> bool:
        await app.rooms.join(conn, "hall")
        return True

    @app.on("announce")
    async def announce(conn: Connection, payload: dict[str, object]) -> int:
        return await app.rooms.broadcast("hall", "announcement", payload)

    shard = await started(app)
    yield app, shard
    await shard.drain()


async def test_a_broadcast_is_framed_once_for_every_local_member(
    room_app: tuple[SocketApp, Shard], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, shard = room_app
    clients: list[Client] = [await connect(f"ws://127.0.0.1:{shard.port}/ws") for _ in range(20)]
    try:
        for client in clients:
            assert await client.call("enter") is True
        framed: list[bytes] = []
        real = frames.text_frame

        def counting(payload: bytes) -> bytes:
            if b"announcement" in payload:
                framed.append(payload)
            return real(payload)

        monkeypatch.setattr(frames, "text_frame", counting)
        assert await clients[0].call("announce", {"n": 1}) == 20
        for client in clients:
            assert await client.receive("announcement", timeout=5) == {"n": 1}
        assert len(framed) == 1
    finally:
        for client in clients:
            await client.close()


async def test_a_full_mailbox_pauses_reading_and_resumes_below_the_low_water_mark(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from socketspec import runtime

    monkeypatch.setattr(runtime, "MAX_INFLIGHT_EVENTS", 2)
    app = SocketApp()
    gate = asyncio.Event()
    handled: list[int] = []
    all_handled = asyncio.Event()
    total = 40

    @app.on("work")
    async def work(conn: Connection, payload: dict[str, int]) -> None:
        await gate.wait()
        handled.append(payload["n"])
        if len(handled) == total:
            all_handled.set()

    shard = await started(app, mailbox_high_water=8, mailbox_low_water=2)
    paused = asyncio.Event()
    original = WebSocketProtocol._offer

    def watching(self: WebSocketProtocol, item: object) -> None:
        original(self, item)  # type: ignore[arg-type]
        if self._reading_paused:
            paused.set()

    monkeypatch.setattr(WebSocketProtocol, "_offer", watching)
    client = await connect(f"ws://127.0.0.1:{shard.port}/ws")
    try:
        for n in range(total):
            await client.emit("work", {"n": n})
        # two handlers hold the slots; the mailbox fills to the high-water mark and reading stops
        await asyncio.wait_for(paused.wait(), 5)
        assert len(handled) == 0
        gate.set()
        await asyncio.wait_for(all_handled.wait(), 5)
        assert sorted(handled) == list(range(total))
        (protocol,) = shard.ctx.protocols if shard.ctx else ()
        assert protocol._reading_paused is False
    finally:
        await client.close()
        await shard.drain()
