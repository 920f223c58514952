"""The app the recovery fault tests serve: five rooms with history, a ``join`` handler and
an acked ``shout`` that broadcasts ``{publisher, seq}`` to a room.
``socketspec-cluster recovery_app:app``.

Every ack names the process that ran the handler (``pid``), so a test can tell a reply
from the shard that ran a send from one of a shard that ran it again after a kill.
``ROOMS`` and ``HISTORY`` are read by the tests (tests/support/recoverykit.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Recovery, Room, SocketApp

ROOMS = [f"room-{n}" for n in range(5)]
# Enough for the longest outage of the tests at their broadcast rate, many times over.
HISTORY = 2000

app = SocketApp(
    rooms=[Room(name, history_size=HISTORY, history_ttl=300.0) for name in ROOMS],
    recovery=Recovery(window=120.0),
)


class RoomArg(BaseModel):
    room: str


class Shout(BaseModel):
    room: str
    publisher: str
    seq: int
    delay: float = 0.0  # seconds before the broadcast (a call still in flight at a drop)
    linger: float = 0.0  # seconds after it, before the reply (cut between the two)


def served_by() -> dict[str, Any]:
    return {"pid": os.getpid(), "shard": app.server_info.get("shard")}


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room, **served_by()}


@app.on("shout")
async def shout(conn: Connection, payload: Shout) -> dict[str, Any]:
    if payload.delay:
        await asyncio.sleep(payload.delay)
    await app.rooms.broadcast(
        payload.room, "shouted", {"publisher": payload.publisher, "seq": payload.seq}
    )
    if payload.linger:
        await asyncio.sleep(payload.linger)
    return {"seq": payload.seq, **served_by()}


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"conn_id": conn.id, **served_by()}
