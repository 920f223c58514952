"""The benchmark's socketspec application: one ``echo`` event sent back to its sender.

A client sends ``{"event":"echo","payload":{...}}``; the handler emits
``{"event":"echo","payload":<the same payload>}`` back on the same connection.
Served with ``socketspec-cluster echo_app:socket`` from this directory (bench/echo.py
does that). Everything else is the default ``SocketApp``: heartbeats, idle and session
timers, no auth, no rate limit.
"""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

socket = SocketApp()


@socket.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> None:
    await conn.emit("echo", payload)
