"""Notifications pushed from the server side: a REST endpoint sends to everyone following a
topic, or to every open tab of one user.

Every connection authenticates with an API key (``x-api-key`` or ``?api_key=``) that
names its user, and is put in that user's own room, ``user:<id>``: sending to the room
reaches every connection of the user, on whichever shard it is. Clients choose topics with
``follow`` and ``unfollow``; everything arrives as a ``notification`` event.

Run it in one process, where the REST endpoints live::

    uvicorn examples.notifications:app

    curl -X POST localhost:8000/topics/releases/notifications \\
         -H 'content-type: application/json' -d '{"title": "1.2 is out"}'
    curl -X POST localhost:8000/users/alice/notifications \\
         -H 'content-type: application/json' -d '{"title": "your export is ready"}'

or on every core with ``socketspec-cluster examples.notifications:socket``; there the
REST app is not served, and a backend service connects with the ``notifier`` key and
sends the same notifications over the socket with the ``publish`` event.

Each send answers ``delivered``: how many connections it reached (on every shard of a
cluster; across nodes sharing Redis, a lower bound: docs/cluster.md).

``NOTIFICATIONS_KEYS`` (``key=user,key=user``) replaces the demo keys below.
"""

from __future__ import annotations

import os
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from socketspec import Broadcasts, Connection, SocketApp
from socketspec.adapters.fastapi import mount
from socketspec.errors import ErrorCode, EventError
from socketspec.security.auth import APIKeyAuth

NOTIFIER = "notifier"  # the user id of the backend service allowed to publish
DEMO_KEYS = {"alice-key": "alice", "bob-key": "bob", "notifier-key": NOTIFIER}
TOPIC = r"^[a-z0-9_-]{1,32}$"


def keys_from(setting: str | None) -> dict[str, str]:
    if not setting:
        return DEMO_KEYS
    pairs = (item.split("=", 1) for item in setting.split(",") if item.strip())
    return {key.strip(): user.strip() for key, user in pairs}


class Notification(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=2000)


class Follow(BaseModel):
    topic: str = Field(pattern=TOPIC)


class Publish(BaseModel):
    to: Literal["topic", "user"]
    name: str = Field(min_length=1, max_length=64)
    notification: Notification


class Delivered(BaseModel):
    delivered: int


socket = SocketApp(docs=True, auth=APIKeyAuth(keys_from(os.environ.get("NOTIFICATIONS_KEYS"))))


def topic_room(topic: str) -> str:
    return f"topic:{topic}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


async def notify_topic(topic: str, notification: Notification) -> int:
    """Send to every connection following ``topic``; how many got it."""
    return await socket.rooms.broadcast(
        topic_room(topic), "notification", {"topic": topic, **notification.model_dump()}
    )


async def notify_user(user_id: str, notification: Notification) -> int:
    """Send to every open connection of ``user_id``; how many got it."""
    return await socket.rooms.broadcast(
        user_room(user_id), "notification", {"user": user_id, **notification.model_dump()}
    )


@socket.on_connect
async def into_own_room(conn: Connection) -> None:
    await socket.rooms.join(conn, user_room(str(conn.identity.user_id)))


@socket.on("follow", tags=["topics"])
async def follow(conn: Connection, payload: Follow) -> dict[str, str]:
    await socket.rooms.join(conn, topic_room(payload.topic))
    return {"following": payload.topic}


@socket.on("unfollow", tags=["topics"])
async def unfollow(conn: Connection, payload: Follow) -> dict[str, str]:
    await socket.rooms.leave(conn, topic_room(payload.topic))
    return {"unfollowed": payload.topic}


@socket.on(
    "publish",
    tags=["service"],
    broadcasts=[
        Broadcasts("notification", "topic:{topic}"),
        Broadcasts("notification", "user:{id}"),
    ],
)
async def publish(conn: Connection, payload: Publish) -> Delivered:
    """For the backend service: the REST endpoints' sends, over the socket."""
    if conn.identity.user_id != NOTIFIER:
        raise EventError("only the notifier service publishes", code=ErrorCode.PERMISSION_ERROR)
    if payload.to == "topic":
        return Delivered(delivered=await notify_topic(payload.name, payload.notification))
    return Delivered(delivered=await notify_user(payload.name, payload.notification))


app = FastAPI(title="notifications")
mount(socket, app, path="/ws")


@app.post("/topics/{topic}/notifications")
async def post_to_topic(topic: str, notification: Notification) -> Delivered:
    return Delivered(delivered=await notify_topic(topic, notification))


@app.post("/users/{user_id}/notifications")
async def post_to_user(user_id: str, notification: Notification) -> Delivered:
    return Delivered(delivered=await notify_user(user_id, notification))
