"""The benchmarks' socketspec application: ``echo``, ``join`` and ``shout`` in one app.

- ``echo``: the payload is sent back to its sender as ``{"event":"echo","payload":<the
  same payload>}``.
- ``join``: the connection joins the room ``hall``; the ack is ``{"room": "hall"}``.
- ``shout``: the payload is broadcast to ``hall`` as ``{"event":"said","payload":<the same
  payload>}``; nothing is returned (no ack).

Served with ``socketspec-cluster bench_app:socket --workers N`` from this directory
(bench/run.py, bench/echo.py and bench/broadcast.py do that). The peers in bench/peers/
serve the same three events. Everything else is the default ``SocketApp``: heartbeats,
idle and session timers, no auth, no rate limit.
"""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

ROOM = "hall"

socket = SocketApp()


@socket.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> None:
    await conn.emit("echo", payload)


@socket.on("join")
async def join(conn: Connection, payload: dict[str, Any]) -> dict[str, str]:
    await socket.rooms.join(conn, ROOM)
    return {"room": ROOM}


@socket.on("shout")
async def shout(conn: Connection, payload: dict[str, Any]) -> None:
    await socket.rooms.broadcast(ROOM, "said", payload)
