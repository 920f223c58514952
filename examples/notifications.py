"""Notifications pushed from the server side: to everyone following a topic, or to every
open connection of one user.

Every connection authenticates with an API key (``x-api-key`` or ``?api_key=``) that
names its user; ``socket.users`` reaches every connection of a user id, on whichever
shard it is. Clients choose topics with ``follow`` and ``unfollow``; everything arrives
as a ``notification`` event. Each send answers how many connections it reached.

In one process, the FastAPI app's REST endpoints send::

    uvicorn examples.notifications:app

    curl -X POST localhost:8000/topics/releases/notifications \\
         -H 'content-type: application/json' -d '{"title": "1.2 is out"}'
    curl -X POST localhost:8000/users/alice/notifications \\
         -H 'content-type: application/json' -d '{"title": "your export is ready"}'

On every core, the cluster's own publish API sends the same messages (docs/push.md)::

    socketspec-cluster examples.notifications:socket --api-key "$PUSH_KEY"

    curl localhost:8000/api/publish -H "Authorization: Bearer $PUSH_KEY" \\
         -d '{"room": "topic:releases", "event": "notification",
              "payload": {"topic": "releases", "title": "1.2 is out", "body": ""}}'
    curl localhost:8000/api/publish -H "Authorization: Bearer $PUSH_KEY" \\
         -d '{"user": "alice", "event": "notification",
              "payload": {"title": "your export is ready", "body": ""}}'

``NOTIFICATIONS_KEYS`` (``key=user,key=user``) replaces the demo keys below.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel, Field

from socketspec import Connection, SocketApp
from socketspec.adapters.fastapi import mount
from socketspec.security.auth import APIKeyAuth

DEMO_KEYS = {"alice-key": "alice", "bob-key": "bob"}
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


class Delivered(BaseModel):
    delivered: int


socket = SocketApp(docs=True, auth=APIKeyAuth(keys_from(os.environ.get("NOTIFICATIONS_KEYS"))))


def topic_room(topic: str) -> str:
    return f"topic:{topic}"


async def notify_topic(topic: str, notification: Notification) -> int:
    """Send to every connection following ``topic``; how many got it."""
    return await socket.rooms.broadcast(
        topic_room(topic), "notification", {"topic": topic, **notification.model_dump()}
    )


async def notify_user(user_id: str, notification: Notification) -> int:
    """Send to every open connection of ``user_id``; how many got it."""
    return await socket.users.emit(user_id, "notification", notification)


@socket.on("follow", tags=["topics"])
async def follow(conn: Connection, payload: Follow) -> dict[str, str]:
    await socket.rooms.join(conn, topic_room(payload.topic))
    return {"following": payload.topic}


@socket.on("unfollow", tags=["topics"])
async def unfollow(conn: Connection, payload: Follow) -> dict[str, str]:
    await socket.rooms.leave(conn, topic_room(payload.topic))
    return {"unfollowed": payload.topic}


app = FastAPI(title="notifications")
mount(socket, app, path="/ws")


@app.post("/topics/{topic}/notifications")
async def post_to_topic(topic: str, notification: Notification) -> Delivered:
    return Delivered(delivered=await notify_topic(topic, notification))


@app.post("/users/{user_id}/notifications")
async def post_to_user(user_id: str, notification: Notification) -> Delivered:
    return Delivered(delivered=await notify_user(user_id, notification))
