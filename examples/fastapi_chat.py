"""A chat inside a FastAPI app: the socket mounted at ``/ws`` beside REST routes that read
the same rooms.

Run it in one process, with the REST routes::

    uvicorn examples.fastapi_chat:app --reload

or the socket alone on every core (the REST routes are the FastAPI app's, so they are
not served there)::

    socketspec-cluster examples.fastapi_chat:socket --workers auto

Clients send ``join``, ``say`` and ``leave``; everyone in a room gets ``joined``,
``message`` and ``left``. ``GET /rooms/{room}`` answers who is in a room.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

from socketspec import Broadcasts, Connection, SocketApp
from socketspec.adapters.fastapi import mount

ROOM_NAME = r"^[A-Za-z0-9_-]{1,32}$"


class Join(BaseModel):
    room: str = Field(pattern=ROOM_NAME)
    name: str = Field(min_length=1, max_length=32)


class Say(BaseModel):
    room: str = Field(pattern=ROOM_NAME)
    text: str = Field(min_length=1, max_length=2000)


class Leave(BaseModel):
    room: str = Field(pattern=ROOM_NAME)


class Presence(BaseModel):
    room: str
    name: str


class Message(BaseModel):
    room: str
    name: str
    text: str


socket = SocketApp(docs=True)


def room_of(name: str) -> str:
    return f"chat:{name}"


def name_of(conn: Connection) -> str:
    return str(conn.metadata.get("name") or conn.id[:8])


@socket.on("join", tags=["chat"], broadcasts=[Broadcasts("joined", "chat:{room}", Presence)])
async def join(conn: Connection, payload: Join) -> dict[str, int]:
    """Enter a room under a display name; answers how many are in it."""
    conn.metadata["name"] = payload.name
    room = room_of(payload.room)
    await socket.rooms.join(conn, room)
    await socket.rooms.broadcast(room, "joined", {"room": payload.room, "name": payload.name})
    return {"members": len(await socket.rooms.members(room))}


@socket.on("say", tags=["chat"], broadcasts=[Broadcasts("message", "chat:{room}", Message)])
async def say(conn: Connection, payload: Say) -> dict[str, int]:
    """Send a message to everyone in a room (joining it first if needed); answers how many
    got it."""
    room = room_of(payload.room)
    if room not in conn.rooms:
        await socket.rooms.join(conn, room)
    delivered = await socket.rooms.broadcast(
        room, "message", {"room": payload.room, "name": name_of(conn), "text": payload.text}
    )
    return {"delivered": delivered}


@socket.on("leave", tags=["chat"], broadcasts=[Broadcasts("left", "chat:{room}", Presence)])
async def leave(conn: Connection, payload: Leave) -> dict[str, bool]:
    room = room_of(payload.room)
    await socket.rooms.leave(conn, room)
    await socket.rooms.broadcast(room, "left", {"room": payload.room, "name": name_of(conn)})
    return {"left": True}


app = FastAPI(title="chat")
mount(socket, app, path="/ws")


@app.get("/rooms/{room}")
async def who_is_in(room: str) -> dict[str, object]:
    """The REST side reads the same rooms the sockets are in."""
    members = await socket.rooms.members(room_of(room))
    return {"room": room, "members": sorted(name_of(conn) for conn in members)}
