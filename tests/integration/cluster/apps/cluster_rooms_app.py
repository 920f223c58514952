"""The app the cluster tests serve: JWT users, rooms, broadcasts, direct emits, member proxies,
a numbered broadcast stream and a slow handler. ``socketspec-cluster cluster_rooms_app:app``.

Every handler answers with an ack, so a test can wait for it; the shard a handler ran on is
``app.server_info["shard"]`` (the shard also says it in the ``__connect__`` greeting)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Room, SocketApp
from socketspec.security.auth import JWTAuth

JWT_SECRET = "cluster-integration-secret-0123456789"  # the same as clusterkit.JWT_SECRET

app = SocketApp(auth=JWTAuth(JWT_SECRET), rooms=[Room("capped", max_members=5)])


class RoomArg(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    sender: str
    n: int


class Stream(BaseModel):
    rooms: list[str]
    count: int
    interval: float


class Direct(BaseModel):
    target: str
    text: str


class Text(BaseModel):
    text: str


class Sleep(BaseModel):
    seconds: float


def here() -> Any:
    return app.server_info.get("shard")


def describe(conn: Connection) -> dict[str, Any]:
    return {
        "id": conn.id,
        "user_id": conn.identity.user_id,
        "role": conn.identity.role,
        "namespace": conn.namespace,
    }


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"shard": here(), **describe(conn)}


@app.on("pid")
async def pid(conn: Connection, payload: dict[str, Any]) -> int:
    """The process serving this connection (tells a shard's instances apart)."""
    return os.getpid()


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room, "shard": here()}


@app.on("leave")
async def leave(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.leave(conn, payload.room)
    # What this shard sees right after the leave (read-your-writes).
    return {"room": payload.room, "members": [m.id for m in await app.rooms.members(payload.room)]}


@app.on("say", ordered=True)
async def say(conn: Connection, payload: Say) -> dict[str, Any]:
    await app.rooms.broadcast(
        payload.room, "said", {"room": payload.room, "sender": payload.sender, "n": payload.n}
    )
    return {"n": payload.n}


@app.on("stream")
async def stream(conn: Connection, payload: Stream) -> dict[str, Any]:
    """Broadcast ``tick`` n = 0 .. count-1 to every room of ``rooms``, one n per interval."""
    for n in range(payload.count):
        for room in payload.rooms:
            await app.rooms.broadcast(room, "tick", {"room": room, "n": n})
        await asyncio.sleep(payload.interval)
    return {"sent": payload.count, "shard": here()}


@app.on("members")
async def members(conn: Connection, payload: RoomArg) -> list[dict[str, Any]]:
    return [describe(member) for member in await app.rooms.members(payload.room)]


@app.on("poke")
async def poke(conn: Connection, payload: RoomArg) -> int:
    """``emit`` on every member object, local or a proxy of a member on another shard."""
    found = await app.rooms.members(payload.room)
    for member in found:
        await member.emit(
            "poked",
            {"by": conn.id, "seen_id": member.id, "seen_user_id": member.identity.user_id},
        )
    return len(found)


@app.on("kick")
async def kick(conn: Connection, payload: RoomArg) -> int:
    """``disconnect`` every other member of the room, through its member object."""
    found = [m for m in await app.rooms.members(payload.room) if m.id != conn.id]
    for member in found:
        await member.disconnect("kicked")
    return len(found)


@app.on("direct")
async def direct(conn: Connection, payload: Direct) -> dict[str, Any]:
    sent = await app.rooms.emit_to(
        payload.target, "direct", {"from": conn.id, "text": payload.text}
    )
    return {"sent": sent}


@app.on("shout_all")
async def shout_all(conn: Connection, payload: Text) -> dict[str, Any]:
    await app.rooms.broadcast_all("shout", {"from": conn.id, "text": payload.text})
    return {"ok": True}


@app.on("shout_except")
async def shout_except(conn: Connection, payload: Text) -> dict[str, Any]:
    await app.rooms.broadcast_except(conn, "shout", {"from": conn.id, "text": payload.text})
    return {"ok": True}


@app.on("slow")
async def slow(conn: Connection, payload: Sleep) -> dict[str, Any]:
    await conn.emit("slow_started", {"seconds": payload.seconds})
    await asyncio.sleep(payload.seconds)
    return {"slept": payload.seconds, "shard": here()}


class CountedSay(BaseModel):
    room: str
    text: str
    exclude_self: bool = False


@app.on("say_counted")
async def say_counted(conn: Connection, payload: CountedSay) -> dict[str, Any]:
    """What ``broadcast`` returns: the members it was fanned out to, cluster-wide."""
    delivered = await app.rooms.broadcast(
        payload.room,
        "said",
        {"room": payload.room, "text": payload.text},
        exclude=[conn] if payload.exclude_self else None,
    )
    return {"delivered": delivered, "shard": here()}


@app.on("shout_except_counted")
async def shout_except_counted(conn: Connection, payload: Text) -> dict[str, Any]:
    delivered = await app.rooms.broadcast_except(conn, "shout", {"text": payload.text})
    return {"delivered": delivered, "shard": here()}


@app.on("shout_all_counted")
async def shout_all_counted(conn: Connection, payload: Text) -> dict[str, Any]:
    delivered = await app.rooms.broadcast_all("shout", {"text": payload.text})
    return {"delivered": delivered, "shard": here()}
