"""The app the push tests serve: JWT users, rooms, a numbered broadcast stream, and one
event with a declared model (``shipped``), so pushed payloads are validated against it.
``max_payload_size`` is 4 KiB, so a larger pushed message is refused with 413."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from socketspec import Broadcasts, Connection, SocketApp
from socketspec.security.auth import JWTAuth

JWT_SECRET = "cluster-integration-secret-0123456789"  # the same as clusterkit.JWT_SECRET

app = SocketApp(auth=JWTAuth(JWT_SECRET), max_payload_size=4096)


class Shipped(BaseModel):
    order_id: int
    carrier: str = "post"


class RoomArg(BaseModel):
    room: str


class Stream(BaseModel):
    room: str
    count: int


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"id": conn.id, "user_id": conn.identity.user_id, "shard": app.server_info["shard"]}


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room}


@app.on("stream")
async def stream(conn: Connection, payload: Stream) -> int:
    """Broadcast ``count`` numbered ``seq`` messages from a handler, yielding between them."""
    for n in range(payload.count):
        await app.rooms.broadcast(payload.room, "seq", {"source": "handler", "n": n})
        await asyncio.sleep(0)
    return payload.count


@app.on("my_connections")
async def my_connections(conn: Connection, payload: dict[str, Any]) -> list[str]:
    user = conn.identity.user_id
    assert user is not None
    return sorted(c.id for c in await app.users.connections(user))


@app.on("tell_user", broadcasts=[Broadcasts("shipped", model=Shipped)])
async def tell_user(conn: Connection, payload: dict[str, Any]) -> int:
    return await app.users.emit(payload["user"], "shipped", Shipped(order_id=payload["order"]))
