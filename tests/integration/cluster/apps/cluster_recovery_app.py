"""The app the two-node recovery test serves: every room keeps history, recovery is on with
the secret left to the cluster (the nodes agree on one through Redis), no authentication (a
recovered connection's identity comes from its token). ``socketspec-cluster
cluster_recovery_app:app --redis URL``.

``join`` joins a room; ``publish`` broadcasts ``said`` ``{publisher, seq}`` to a room and
answers with an ack once the broadcast was handed to its home."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Recovery, SocketApp

app = SocketApp(history_size=2000, history_ttl=120.0, recovery=Recovery(window=60.0))


class RoomArg(BaseModel):
    room: str


class Said(BaseModel):
    room: str
    publisher: str
    seq: int


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room, "shard": app.server_info.get("shard")}


@app.on("publish")
async def publish(conn: Connection, payload: Said) -> dict[str, Any]:
    await app.rooms.broadcast(
        payload.room, "said", {"publisher": payload.publisher, "seq": payload.seq}
    )
    return {"seq": payload.seq}
