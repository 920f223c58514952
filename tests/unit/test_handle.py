"""The connection handle: what a transport keeps for one admitted connection."""

from __future__ import annotations

import asyncio
from typing import Any

from socketspec import SocketApp
from socketspec.handle import ConnectionHandle
from socketspec.runtime import MAX_INFLIGHT_EVENTS
from socketspec.session import SessionConfig
from socketspec.testing import MemoryTransport, TestClient

ORIGIN = {"origin": "http://testserver"}


def blocking_app() -> tuple[SocketApp, asyncio.Event, list[int]]:
    app = SocketApp()
    release = asyncio.Event()
    started: list[int] = []

    @app.on("work")
    async def work(conn: Any, payload: dict[str, int]) -> None:
        started.append(payload["n"])
        await release.wait()

    return app, release, started


def work(n: int) -> bytes:
    return b'{"event":"work","payload":{"n":%d}}' % n


async def test_accept_returns_the_handle_of_the_admitted_connection() -> None:
    app, _, _ = blocking_app()
    transport = MemoryTransport()
    handle = await app.accept(transport, ORIGIN, {})
    assert isinstance(handle, ConnectionHandle)
    assert app.runtime(handle.conn.id) is not None
    greeting = transport.inbox.pending()[0]
    assert greeting["event"] == "__connect__" and greeting["payload"]["conn_id"] == handle.conn.id
    await handle.disconnect("client_close")
    assert app.runtime(handle.conn.id) is None


async def test_offer_is_refused_while_every_slot_is_busy_and_when_ready_calls_back() -> None:
    app, release, started = blocking_app()
    handle = await app.accept(MemoryTransport(), ORIGIN, {})
    for n in range(MAX_INFLIGHT_EVENTS):
        assert handle.offer(work(n)) is True
    assert handle.offer(work(MAX_INFLIGHT_EVENTS)) is False  # nothing done: offer it again
    ready = asyncio.Event()
    handle.when_ready(ready.set)
    await asyncio.sleep(0)
    assert len(started) == MAX_INFLIGHT_EVENTS and not ready.is_set()
    release.set()
    await asyncio.wait_for(ready.wait(), 2)
    assert handle.offer(work(MAX_INFLIGHT_EVENTS)) is True
    await handle.wait_idle()
    assert sorted(started) == list(range(MAX_INFLIGHT_EVENTS + 1))
    await handle.disconnect("client_close")


async def test_the_test_client_waits_for_a_slot_through_the_handle() -> None:
    app, release, started = blocking_app()
    async with TestClient(app).connect() as conn:
        for n in range(MAX_INFLIGHT_EVENTS):
            await conn.send_raw(work(n))
        waiting = asyncio.ensure_future(conn.send_raw(work(MAX_INFLIGHT_EVENTS)))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # backpressure: every handler slot is busy
        release.set()
        await asyncio.wait_for(waiting, 2)
        await conn.wait_idle()
    assert len(started) == MAX_INFLIGHT_EVENTS + 1


async def test_an_offer_after_the_end_is_dropped() -> None:
    app, _, started = blocking_app()
    handle = await app.accept(MemoryTransport(), ORIGIN, {})
    await handle.disconnect("client_close")
    assert handle.offer(work(1)) is True  # taken, and dropped: the connection is gone
    handle.refuse_oversize()  # nothing to tell a closed connection
    assert started == []


async def test_the_handles_close_sends_the_code_and_cleans_up() -> None:
    app, _, _ = blocking_app()
    transport = MemoryTransport()
    handle = await app.accept(transport, ORIGIN, {})
    await handle.close(4000, "bye")
    assert transport.close_code == 4000
    assert app.runtime(handle.conn.id) is None


async def test_the_runtime_closes_through_the_callable_it_was_given() -> None:
    """A session policy close (here the heartbeat's) reaches the application's close
    through the runtime's close callable, with the policy's code."""
    app = SocketApp(session=SessionConfig(heartbeat_interval=0.05, heartbeat_timeout=0.05))
    disconnects: list[str] = []

    @app.on_disconnect
    async def gone(conn: Any, reason: str) -> None:
        disconnects.append(reason)

    transport = MemoryTransport()
    handle = await app.accept(transport, ORIGIN, {})
    await asyncio.wait_for(transport.closed.wait(), 2)
    assert transport.close_code == 4005
    assert app.runtime(handle.conn.id) is None
    assert len(disconnects) == 1
