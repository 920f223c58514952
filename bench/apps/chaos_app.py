"""The fault campaign's application (bench/chaos.py): numbered broadcasts to rooms.

- ``join`` ``{"room"}``: the connection joins the room (``chaos`` when not given); the ack
  says on which shard it runs.
- ``say`` (ordered) ``{"room", "sender", "seq", "pad"}``: broadcast to the room as ``said``;
  the ack is the count ``broadcast`` returns. The ack is what makes a message "sent" for
  the campaign's accounting: the cluster took it.
- ``echo``: the payload back as the ack (connection churn, liveness probes).

Served with ``socketspec-cluster chaos_app:socket --workers 2`` from this directory.
"""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

ROOM = "chaos"

socket = SocketApp()


@socket.on("join")
async def join(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    room = str(payload.get("room", ROOM))
    await socket.rooms.join(conn, room)
    return {"room": room, "shard": socket.server_info.get("shard")}


@socket.on("say", ordered=True)
async def say(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    delivered = await socket.rooms.broadcast(str(payload.get("room", ROOM)), "said", payload)
    return {"delivered": delivered}


@socket.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return payload
