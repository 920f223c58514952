"""One SocketApp mounted on FastAPI, served by uvicorn, hypercorn and granian as real
processes: the envelope, acks, a room broadcast from a REST route, the docs page; under
uvicorn, the drain when the server is told to stop (``__server_shutdown__``, the running
handler's reply, close 1001)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from asgikit import (
    BIN,
    ServerProcess,
    UvicornProcess,
    close_code,
    http_over_uds,
    recv,
    recv_event,
    send,
)
from websockets.asyncio.client import ClientConnection, connect, unix_connect

APPS = Path(__file__).resolve().parent / "apps"

SERVERS = {
    "hypercorn": [str(BIN / "hypercorn"), "--bind", "unix:{uds}", "served_app:app"],
    "granian": [
        str(BIN / "granian"),
        "--interface",
        "asgi",
        "--uds",
        "{uds}",
        "served_app:app",
    ],
}


async def drains_on_stop(ws: ClientConnection, stop: Callable[[], None]) -> None:
    """A handler running when the server is told to stop finishes; then the close is 1001."""
    await send(ws, "slow", {"seconds": 1.0}, ack="slow")
    await recv_event(ws, "slow_started")
    stop()
    notice = await recv_event(ws, "__server_shutdown__", timeout=10)
    assert notice["payload"]["graceful_timeout"] == 10
    ack = await recv_event(ws, "__ack__", timeout=10)
    assert (ack["ack"], ack["payload"]) == ("slow", {"finished": "yes"})
    assert await close_code(ws) == 1001


async def test_uvicorn_drains_on_sigterm(spawn_uvicorn: Callable[..., UvicornProcess]) -> None:
    server = spawn_uvicorn(["served_app:app"], APPS)
    await asyncio.to_thread(server.wait_ready)
    async with connect(server.ws + "/ws") as ws:
        assert (await recv(ws))["event"] == "__connect__"
        await drains_on_stop(ws, server.terminate)
    # uvicorn re-raises the signal it caught once it has shut down: the default action ends it.
    assert await asyncio.to_thread(server.process.wait, 20) == -signal.SIGTERM
    log = server.output()
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("name", sorted(SERVERS))
async def test_served_by(name: str, spawn_server: Callable[..., ServerProcess]) -> None:
    server = spawn_server(SERVERS[name], APPS)
    uds = await asyncio.to_thread(server.wait_uds)
    async with (
        unix_connect(uds, "ws://localhost/ws") as alice,
        unix_connect(uds, "ws://localhost/ws") as bob,
    ):
        for ws in (alice, bob):
            assert (await recv(ws))["event"] == "__connect__"
            await send(ws, "join", {"room": "news"}, ack="joined")
            assert (await recv_event(ws, "__ack__"))["ack"] == "joined"
        await send(alice, "echo", {"text": "hi"}, ack=7)
        assert await recv_event(alice, "__ack__") == {
            "event": "__ack__",
            "ack": 7,
            "payload": {"text": "hi"},
        }
        status, body = await asyncio.to_thread(
            http_over_uds, uds, "/notify/news?text=breaking", "POST"
        )
        assert (status, json.loads(body)) == (200, {"delivered": 2})
        for ws in (alice, bob):
            assert (await recv_event(ws, "notice"))["payload"] == {"text": "breaking"}
    status, page = await asyncio.to_thread(http_over_uds, uds, "/socket-docs")
    assert status == 200 and b"<html" in page.lower()
    status, body = await asyncio.to_thread(http_over_uds, uds, "/asyncapi.json")
    assert status == 200 and json.loads(body)["asyncapi"].startswith("3.")
    # These servers end their WebSocket connections before the lifespan's shutdown (see
    # docs/asgi.md): a client sees its connection end, and the server exits cleanly.
    async with unix_connect(uds, "ws://localhost/ws") as ws:
        await recv(ws)
        server.terminate()
        assert await close_code(ws) is not None
    assert await asyncio.to_thread(server.process.wait, 20) == 0, server.output()[-3000:]
