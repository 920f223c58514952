"""A chat server: rooms, a guarded ``admin:{section}`` room, acks, optional JWT auth.

Run it on the cluster (``socketspec-cluster examples.chat:socket``) or drive it
in-process with ``socketspec.testing.TestClient`` (see ``chat_demo.py``).
Set ``CHAT_JWT_SECRET`` to require HS256 tokens whose ``sub`` is the user and
whose ``role`` may be ``admin``.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

from socketspec import Broadcasts, Connection, Depends, Emits, Room, SocketApp
from socketspec.security.auth import JWTAuth


class JoinRoom(BaseModel):
    room: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class SendMessage(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class SetName(BaseModel):
    name: str = Field(min_length=1, max_length=32)


class JoinAdmin(BaseModel):
    section: str = Field(min_length=1, max_length=32)


class Joined(BaseModel):
    room: str
    members: int


class NewMessage(BaseModel):
    room: str
    sender: str
    text: str


class Presence(BaseModel):
    room: str
    user: str


def display_name(conn: Connection) -> str:
    """The name a user chose, else their authenticated id, else a short connection id."""
    name = conn.metadata.get("name") or conn.identity.user_id or conn.id[:8]
    return str(name)


def create_app(jwt_secret: str | None = None) -> SocketApp:
    socket = SocketApp(
        docs=True,
        auth=JWTAuth(jwt_secret) if jwt_secret else None,
        rooms=[Room("lobby"), Room("chat:{room}", max_members=100)],
    )

    @socket.room_guard("admin:{section}")
    async def admins_only(conn: Connection, section: str) -> bool:
        return conn.identity.role == "admin"

    @socket.on_connect
    async def welcome(conn: Connection) -> None:
        await socket.rooms.join(conn, "lobby")
        await conn.emit("welcome", {"conn_id": conn.id, "room": "lobby"})

    @socket.on(
        "set_name",
        tags=["profile"],
        description="Choose the name shown next to your messages.",
    )
    async def set_name(conn: Connection, payload: SetName) -> dict[str, str]:
        conn.metadata["name"] = payload.name
        return {"name": payload.name}

    @socket.on(
        "join_room",
        tags=["rooms"],
        description="Join a chat room; the ack carries the member count.",
        emits=[Emits("joined", model=Joined)],
        broadcasts=[Broadcasts("user_joined", room="chat:{room}", model=Presence)],
    )
    async def join_room(
        conn: Connection, payload: JoinRoom, name: str = Depends(display_name)
    ) -> Joined:
        room = f"chat:{payload.room}"
        await socket.rooms.join(conn, room)
        members = len(await socket.rooms.members(room))
        await socket.rooms.broadcast(
            room, "user_joined", Presence(room=payload.room, user=name), exclude=[conn]
        )
        joined = Joined(room=payload.room, members=members)
        await conn.emit("joined", joined)
        return joined

    @socket.on(
        "leave_room",
        tags=["rooms"],
        description="Leave a chat room.",
        broadcasts=[Broadcasts("user_left", room="chat:{room}", model=Presence)],
    )
    async def leave_room(
        conn: Connection, payload: JoinRoom, name: str = Depends(display_name)
    ) -> dict[str, str]:
        room = f"chat:{payload.room}"
        await socket.rooms.leave(conn, room)
        await socket.rooms.broadcast(room, "user_left", Presence(room=payload.room, user=name))
        return {"left": payload.room}

    @socket.on(
        "send_message",
        tags=["chat"],
        description="Send a message to a room you are in; messages arrive in order.",
        broadcasts=[Broadcasts("new_message", room="chat:{room}", model=NewMessage)],
        ordered=True,
    )
    async def send_message(
        conn: Connection, payload: SendMessage, name: str = Depends(display_name)
    ) -> dict[str, int]:
        room = f"chat:{payload.room}"
        if room not in conn.rooms:
            await socket.rooms.join(conn, room)
        delivered = await socket.rooms.broadcast(
            room, "new_message", NewMessage(room=payload.room, sender=name, text=payload.text)
        )
        return {"delivered": delivered}

    @socket.on(
        "join_admin",
        tags=["admin"],
        description="Join an admin section; only users whose token has role 'admin'.",
    )
    async def join_admin(conn: Connection, payload: JoinAdmin) -> dict[str, str]:
        await socket.rooms.join(conn, f"admin:{payload.section}")
        return {"joined": f"admin:{payload.section}"}

    @socket.on("who_is_here", tags=["rooms"], description="List the members of a room.")
    async def who_is_here(conn: Connection, payload: JoinRoom) -> dict[str, object]:
        members = await socket.rooms.members(f"chat:{payload.room}")
        return {"room": payload.room, "members": sorted(display_name(m) for m in members)}

    return socket


socket = create_app(os.environ.get("CHAT_JWT_SECRET"))
