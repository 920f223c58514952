"""examples/notifications.py over real sockets, under uvicorn (the REST endpoints) and on
the cluster (the notifier service's ``publish`` over the socket)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asgikit import close_code, recv, recv_event, send
from examplekit import Serve, Served
from websockets.asyncio.client import ClientConnection, connect


@asynccontextmanager
async def client(served: Served, key: str) -> AsyncIterator[ClientConnection]:
    async with connect(served.ws, additional_headers={"x-api-key": key}) as ws:
        greeting = await recv(ws)
        assert greeting["event"] == "__connect__", greeting
        yield ws


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def push(served: Served, to: str, name: str, notification: dict[str, str]) -> int:
    """Send a notification the way this server offers: REST under uvicorn, the notifier
    service's ``publish`` on the cluster; how many it reached."""
    if served.has_rest:
        path = f"/topics/{name}/notifications" if to == "topic" else f"/users/{name}/notifications"
        result = await asyncio.to_thread(post, served.http + path, notification)
        delivered: int = result["delivered"]
        return delivered
    async with client(served, "notifier-key") as notifier:
        payload = {"to": to, "name": name, "notification": notification}
        await send(notifier, "publish", payload, ack="p")
        ack = await recv_event(notifier, "__ack__")
        delivered = ack["payload"]["delivered"]
        return delivered


async def follow(ws: ClientConnection, topic: str) -> None:
    await send(ws, "follow", {"topic": topic}, ack="f")
    assert (await recv_event(ws, "__ack__"))["payload"] == {"following": topic}


async def test_to_a_topic_and_to_every_tab_of_one_user(serve: Serve) -> None:
    served = serve("notifications")
    async with (
        client(served, "alice-key") as alice_tab1,
        client(served, "alice-key") as alice_tab2,
        client(served, "bob-key") as bob,
    ):
        await follow(alice_tab1, "releases")
        await follow(bob, "releases")
        assert await push(served, "topic", "releases", {"title": "1.2 is out"}) == 2
        for ws in (alice_tab1, bob):
            notification = await recv_event(ws, "notification")
            assert notification["payload"] == {
                "topic": "releases",
                "title": "1.2 is out",
                "body": "",
            }
        assert await push(served, "user", "alice", {"title": "export ready"}) == 2
        for ws in (alice_tab1, alice_tab2):
            notification = await recv_event(ws, "notification")
            assert notification["payload"] == {"user": "alice", "title": "export ready", "body": ""}
        # bob got neither the user's notification nor anything else: his next message is the
        # answer to what he sends now.
        await send(bob, "unfollow", {"topic": "releases"}, ack="u")
        assert (await recv(bob))["event"] == "__ack__"
        assert await push(served, "topic", "releases", {"title": "1.3"}) == 1
        assert (await recv_event(alice_tab1, "notification"))["payload"]["title"] == "1.3"
        await send(bob, "follow", {"topic": "other"}, ack="o")
        assert (await recv(bob))["event"] == "__ack__"  # and no "1.3" before it


async def test_only_the_notifier_publishes_and_a_bad_key_is_refused(serve: Serve) -> None:
    served = serve("notifications")
    async with client(served, "bob-key") as bob:
        payload = {"to": "user", "name": "alice", "notification": {"title": "fake"}}
        await send(bob, "publish", payload, ack="x")
        error = await recv_event(bob, "__error__")
        assert (error["ack"], error["payload"]["code"]) == ("x", "PERMISSION_ERROR")
    async with connect(served.ws, additional_headers={"x-api-key": "wrong"}) as stranger:
        assert (await recv(stranger))["payload"]["code"] == "AUTH_ERROR"
        assert await close_code(stranger) == 4001
