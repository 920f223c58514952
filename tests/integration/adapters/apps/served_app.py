"""A FastAPI app with a mounted SocketApp, for the tests that run an ASGI server as a process
(uvicorn's signals and drain, hypercorn, granian): ``served_app:app``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from socketspec import Connection, SocketApp
from socketspec.adapters.fastapi import mount

socket = SocketApp(docs=True)


@socket.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@socket.on("join")
async def join(conn: Connection, payload: dict[str, Any]) -> dict[str, str]:
    await socket.rooms.join(conn, payload["room"])
    return {"joined": payload["room"]}


@socket.on("slow")
async def slow(conn: Connection, payload: dict[str, Any]) -> dict[str, str]:
    """Still running when the server is told to stop: the drain lets it finish."""
    await conn.emit("slow_started", {})
    await asyncio.sleep(payload["seconds"])
    return {"finished": "yes"}


app = FastAPI()
mount(socket, app, graceful_timeout=10)


@app.post("/notify/{room}")
async def notify(room: str, text: str) -> dict[str, int]:
    return {"delivered": await socket.rooms.broadcast(room, "notice", {"text": text})}
