"""SIGTERM drain of a ``socketspec-cluster`` process: ``__server_shutdown__``, running
handlers finish within ``--graceful-timeout``, close 1001, exit 0, no new connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import websockets
from shardkit import ServerProcess

from socketspec.client import ConnectionClosed, ConnectRefused, connect

Spawn = Callable[..., ServerProcess]


async def refused(url: str) -> bool:
    """Whether a new connection is refused (TCP refused, or an HTTP refusal)."""
    try:
        client = await connect(url, open_timeout=5)
    except (OSError, ConnectRefused):
        return True
    await client.close()
    return False


async def test_sigterm_lets_the_running_handler_finish_then_closes_1001_and_exits_0(
    spawn_server: Spawn,
) -> None:
    server = spawn_server("ss_drain_app:socket", "--port", "0", "--graceful-timeout", "15")
    port = await server.listening()
    url = f"ws://127.0.0.1:{port}/ws"
    loop = asyncio.get_running_loop()
    client = await connect(url)
    bystander = await websockets.connect(url)  # an idle third-party client
    assert json.loads(await bystander.recv())["event"] == "__connect__"
    await client.emit("slow", {"seconds": 1.0}, ack="slow-1")
    await client.receive("started", timeout=10)
    server.terminate()
    sent_at = loop.time()
    shutdown = await client.receive(timeout=10)
    assert shutdown["event"] == "__server_shutdown__"
    assert await refused(url)
    ack = await client.receive(timeout=15)
    assert ack == {"event": "__ack__", "ack": "slow-1", "payload": {"done": True}}
    assert loop.time() - sent_at >= 0.5  # it really waited for the handler
    assert await client.wait_closed(timeout=15) == 1001
    assert json.loads(await bystander.recv())["event"] == "__server_shutdown__"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await bystander.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert await server.wait(20) == 0
    await client.close()


async def test_a_handler_past_the_graceful_timeout_does_not_hold_the_shutdown(
    spawn_server: Spawn,
) -> None:
    server = spawn_server("ss_drain_app:socket", "--port", "0", "--graceful-timeout", "0.5")
    port = await server.listening()
    loop = asyncio.get_running_loop()
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        await client.emit("slow", {"seconds": 60}, ack="never")
        await client.receive("started", timeout=10)
        server.terminate()
        sent_at = loop.time()
        assert (await client.receive(timeout=10))["event"] == "__server_shutdown__"
        assert await client.wait_closed(timeout=20) == 1001
        assert loop.time() - sent_at < 15
        with pytest.raises(ConnectionClosed):  # the handler was cut short: no ack
            await client.receive("__ack__", timeout=1)
    assert await server.wait(20) == 0


async def test_sigterm_on_an_idle_server_exits_0(spawn_server: Spawn) -> None:
    server = spawn_server("ss_drain_app:socket", "--port", "0")
    await server.listening()
    server.terminate()
    assert await server.wait(20) == 0
