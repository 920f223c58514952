"""An app for the SIGTERM drain tests: ``slow`` says it started, sleeps, then acks."""

from __future__ import annotations

import asyncio
from typing import Any

from socketspec import Connection, SocketApp

socket = SocketApp()


@socket.on("slow")
async def slow(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    await conn.emit("started", {"seconds": payload["seconds"]})
    await asyncio.sleep(float(payload["seconds"]))
    return {"done": True}


@socket.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return payload
