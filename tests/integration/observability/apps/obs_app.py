"""The app the observability tests serve: rooms, broadcasts, a handler that raises, a slow
handler and a flood of messages to the caller.

Two instances with the same events: ``obs_app:app`` sends a heartbeat every second (so that
heartbeat round trips are observed within a short test, and a client that does not answer
is closed with 4005 after 2 s more), ``obs_app:quiet`` keeps the default heartbeat (25 s), so
that a short scripted connection life sends and receives only what the test sends."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, SocketApp
from socketspec.session import SessionConfig


class RoomArg(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    n: int


class Flood(BaseModel):
    count: int
    size: int


class Sleep(BaseModel):
    seconds: float


def build(session: SessionConfig) -> SocketApp:
    socket = SocketApp(session=session)

    def here() -> Any:
        return socket.server_info.get("shard")

    @socket.on("whoami")
    async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return {"shard": here(), "id": conn.id}

    @socket.on("join")
    async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
        await socket.rooms.join(conn, payload.room)
        return {"room": payload.room, "shard": here()}

    @socket.on("leave")
    async def leave(conn: Connection, payload: RoomArg) -> dict[str, Any]:
        await socket.rooms.leave(conn, payload.room)
        return {"room": payload.room}

    @socket.on("say", ordered=True)
    async def say(conn: Connection, payload: Say) -> dict[str, Any]:
        await socket.rooms.broadcast(payload.room, "said", {"room": payload.room, "n": payload.n})
        return {"n": payload.n}

    @socket.on("boom")
    async def boom(conn: Connection, payload: dict[str, Any]) -> None:
        raise RuntimeError("boom on purpose")

    @socket.on("slow")
    async def slow(conn: Connection, payload: Sleep) -> dict[str, Any]:
        await asyncio.sleep(payload.seconds)
        return {"slept": payload.seconds}

    @socket.on("flood")
    async def flood(conn: Connection, payload: Flood) -> None:
        """``count`` messages of ``size`` characters to the caller, as fast as it can."""
        text = "x" * payload.size
        for n in range(payload.count):
            await conn.emit("blob", {"n": n, "text": text})
            if n % 16 == 15:
                await asyncio.sleep(0)

    return socket


app = build(SessionConfig(heartbeat_interval=1, heartbeat_timeout=2))
quiet = build(SessionConfig())
