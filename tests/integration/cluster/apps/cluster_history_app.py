"""The app of the room history tests: rooms named ``h-*`` keep their last 500 messages, the
others none; connection-state recovery on. ``socketspec-cluster cluster_history_app:app``.

The recovery secret is the app's own, so a token signed by one shard is good on the other
and after a restart whatever the supervisor does."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Room, SocketApp
from socketspec.recovery import Recovery

app = SocketApp(
    rooms=[Room("h-{name}", history_size=500, history_ttl=120.0)],
    recovery=Recovery(window=60.0, secret="cluster-history-recovery-secret-0123456789"),
)


class RoomArg(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    n: int


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"shard": app.server_info.get("shard"), "pid": os.getpid(), "id": conn.id}


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room}


@app.on("say", ordered=True)
async def say(conn: Connection, payload: Say) -> dict[str, Any]:
    await app.rooms.broadcast(payload.room, "said", {"room": payload.room, "n": payload.n})
    return {"n": payload.n}
