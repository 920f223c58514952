"""``uvicorn main:app --reload`` through the adapter, as a real process: editing the app's
source restarts the worker, the open connection is drained (``__server_shutdown__``, close
1001) and a new connection reaches the new handlers."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from asgikit import UvicornProcess, close_code, recv, recv_event, send
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

MAIN = """
from fastapi import FastAPI
from socketspec import Connection, SocketApp
from socketspec.adapters.fastapi import mount

socket = SocketApp()


@socket.on("version")
async def version(conn: Connection, payload: dict) -> dict:
    return {{"version": {version}}}
{extra}

app = FastAPI()
mount(socket, app, path="/ws")
"""

ADDED = """

@socket.on("added")
async def added(conn: Connection, payload: dict) -> dict:
    return {"added": True}
"""


def write_main(directory: Path, version: int, extra: str = "") -> None:
    path = directory / "main.py"
    path.write_text(MAIN.format(version=version, extra=extra))
    # A later modification time than the reloader saw, even on a coarse clock.
    later = time.time() + version
    os.utime(path, (later, later))


async def call(url: str, event: str) -> dict[str, object]:
    async with connect(url) as ws:
        await recv(ws)
        await send(ws, event, {}, ack=event)
        ack = await recv_event(ws, "__ack__")
        payload: dict[str, object] = ack["payload"]
        return payload


async def test_editing_the_source_serves_the_new_handler(
    tmp_path: Path, spawn_uvicorn: Callable[..., UvicornProcess]
) -> None:
    write_main(tmp_path, 1)
    server = spawn_uvicorn(["main:app", "--reload", "--reload-dir", str(tmp_path)], tmp_path)
    port = await asyncio.to_thread(server.wait_ready)
    url = f"ws://127.0.0.1:{port}/ws"
    assert await call(url, "version") == {"version": 1}
    async with connect(url) as ws:
        await recv(ws)
        write_main(tmp_path, 2, ADDED)
        # the old worker drains its connections before it goes
        assert (await recv_event(ws, "__server_shutdown__", timeout=20))["event"]
        assert await close_code(ws) == 1001
    deadline = time.monotonic() + 30
    while True:
        try:
            assert await call(url, "version") == {"version": 2}
            break
        except (OSError, InvalidStatus) as exc:
            # Refused while the old worker drains (503), or while the new one starts.
            if isinstance(exc, InvalidStatus):
                assert exc.response.status_code == 503
            if time.monotonic() > deadline:
                raise AssertionError("the reloaded app did not serve:\n" + server.output()) from exc
            await asyncio.sleep(0.1)
    assert await call(url, "added") == {"added": True}
    assert "Traceback" not in server.output(), server.output()
