"""The app of the browser client's acceptance tests: JWT auth, rooms (``h-*`` keep their
last 500 messages for recovery), connection-state recovery with a secret every shard
shares, a short token refresh window, and the docs page on (the shard serves the shipped
client module beside it). ``socketspec-cluster browser_client_app:app``.

``whoami`` says which shard and process serve a connection (the tests place connections
on chosen shards with it); ``kick`` closes the caller's connection with a code that the
client retries (1012, service restart)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Room, SessionConfig, SocketApp
from socketspec.recovery import Recovery
from socketspec.security.auth import JWTAuth

# Shared with the tests (which import this module by path).
JWT_SECRET = "browser-client-integration-secret-0123456789"
RECOVERY_SECRET = "browser-client-recovery-secret-0123456789"
# __auth_expiring__ goes out this many seconds before a token's exp.
TOKEN_REFRESH_WINDOW = 3.0
SERVICE_RESTART = 1012

app = SocketApp(
    docs=True,
    auth=JWTAuth(JWT_SECRET),
    rooms=[Room("h-{name}", history_size=500, history_ttl=120.0)],
    recovery=Recovery(window=60.0, secret=RECOVERY_SECRET),
    session=SessionConfig(token_refresh_window=TOKEN_REFRESH_WINDOW),
)


class RoomArg(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    n: int


class Add(BaseModel):
    a: int
    b: int


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "shard": app.server_info.get("shard"),
        "pid": os.getpid(),
        "id": conn.id,
        "user": conn.identity.user_id,
    }


@app.on("add")
async def add(conn: Connection, payload: Add) -> dict[str, int]:
    return {"sum": payload.a + payload.b}


@app.on("join")
async def join(conn: Connection, payload: RoomArg) -> dict[str, Any]:
    await app.rooms.join(conn, payload.room)
    return {"room": payload.room}


@app.on("say", ordered=True)
async def say(conn: Connection, payload: Say) -> dict[str, Any]:
    await app.rooms.broadcast(payload.room, "said", {"room": payload.room, "n": payload.n})
    return {"n": payload.n}


@app.on("kick")
async def kick(conn: Connection, payload: dict[str, Any]) -> None:
    await app.close_connection(conn, SERVICE_RESTART, "kicked")
