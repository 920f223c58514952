"""A small app whose TypeScript types the tsc test compiles: enums, literals, optional and
nested fields, a union, an ``Any`` field, an ack, an event without one, two namespaces."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from socketspec import Broadcasts, Connection, Emits, SocketApp


class Mood(StrEnum):
    HAPPY = "happy"
    SAD = "sad"


class Attachment(BaseModel):
    url: str
    kind: Literal["image", "file"]


class SendMessage(BaseModel):
    room: str
    text: str
    mood: Mood = Mood.HAPPY
    attachments: list[Attachment] = []
    reply_to: int | str | None = None
    meta: Any = None


class Sent(BaseModel):
    id: int
    delivered: int


class NewMessage(BaseModel):
    room: str
    text: str
    mood: Mood


class Kick(BaseModel):
    user: str


socket = SocketApp()


@socket.on(
    "send_message",
    broadcasts=[Broadcasts("new_message", room="chat:{room}", model=NewMessage)],
)
async def send_message(conn: Connection, payload: SendMessage) -> Sent:
    return Sent(id=1, delivered=0)


@socket.on("typing", emits=[Emits("typing_seen")])
async def typing(conn: Connection, payload: dict[str, Any]) -> None:
    return None


@socket.on("kick", namespace="/admin")
async def kick(conn: Connection, payload: Kick) -> list[str]:
    return [payload.user]
