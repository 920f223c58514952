"""The broadcast benchmark's socketspec application: one room, ``hall``.

- ``join``: the connection joins ``hall``; the ack is ``{"room": "hall"}``.
- ``shout``: its payload is broadcast to ``hall`` as ``{"event":"said","payload":<the same
  payload>}``; nothing is returned (no ack).

Served with ``socketspec-cluster broadcast_app:socket --workers N`` from this directory
(bench/broadcast.py does that). Everything else is the default ``SocketApp``: heartbeats,
idle and session timers, no auth, no rate limit.
"""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

ROOM = "hall"

socket = SocketApp()


@socket.on("join")
async def join(conn: Connection, payload: dict[str, Any]) -> dict[str, str]:
    await socket.rooms.join(conn, ROOM)
    return {"room": ROOM}


@socket.on("shout")
async def shout(conn: Connection, payload: dict[str, Any]) -> None:
    await socket.rooms.broadcast(ROOM, "said", payload)
