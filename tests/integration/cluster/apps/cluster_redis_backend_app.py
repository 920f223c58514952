"""An app that asks for Redis itself, ``SocketApp(backend=RedisBackend(url, node_ttl=...))``,
with the URL and TTL from the environment (``REDIS_BACKEND_TEST_URL``,
``REDIS_BACKEND_TEST_TTL``): served by ``socketspec-cluster`` without ``--redis``, its nodes
must still share rooms. No auth; every handler answers with an ack."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, RedisBackend, SocketApp

URL_ENV = "REDIS_BACKEND_TEST_URL"
TTL_ENV = "REDIS_BACKEND_TEST_TTL"

app = SocketApp(
    backend=RedisBackend(os.environ[URL_ENV], node_ttl=float(os.environ.get(TTL_ENV, "15")))
)


class RoomArg(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    sender: str
    n: int


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room}


@app.on("say", ordered=True)
async def say(conn: Connection, payload: Say) -> dict[str, Any]:
    await app.rooms.broadcast(
        payload.room, "said", {"room": payload.room, "sender": payload.sender, "n": payload.n}
    )
    return {"n": payload.n}


@app.on("members")
async def members(conn: Connection, payload: RoomArg) -> list[str]:
    return [member.id for member in await app.rooms.members(payload.room)]
