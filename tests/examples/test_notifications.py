"""examples/notifications.py over real sockets: under uvicorn the FastAPI app's REST
endpoints send, on the cluster its publish API does (``--api-key``)."""

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

PUSH_KEY = "push-key-for-the-test"


@asynccontextmanager
async def client(served: Served, key: str) -> AsyncIterator[ClientConnection]:
    async with connect(served.ws, additional_headers={"x-api-key": key}) as ws:
        greeting = await recv(ws)
        assert greeting["event"] == "__connect__", greeting
        yield ws


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


async def push(served: Served, to: str, name: str, notification: dict[str, str]) -> int:
    """Send a notification the way this server offers: the REST endpoints under uvicorn,
    the publish API on the cluster; how many connections it reached."""
    if served.has_rest:
        path = f"/topics/{name}/notifications" if to == "topic" else f"/users/{name}/notifications"
        result = await asyncio.to_thread(post, served.http + path, notification, {})
    else:
        full = {"body": "", **notification}
        if to == "topic":
            message = {"room": f"topic:{name}", "payload": {"topic": name, **full}}
        else:
            message = {"user": name, "payload": full}
        bearer = {"Authorization": f"Bearer {PUSH_KEY}"}
        body = {"event": "notification", **message}
        result = await asyncio.to_thread(post, served.http + "/api/publish", body, bearer)
    delivered: int = result["delivered"]
    return delivered


async def follow(ws: ClientConnection, topic: str) -> None:
    await send(ws, "follow", {"topic": topic}, ack="f")
    assert (await recv_event(ws, "__ack__"))["payload"] == {"following": topic}


def start(serve: Serve) -> Served:
    return serve("notifications", cluster_args=["--api-key", PUSH_KEY])


async def test_to_a_topic_and_to_every_connection_of_one_user(serve: Serve) -> None:
    served = start(serve)
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
            assert notification["payload"] == {"title": "export ready", "body": ""}
        # bob got nothing else: his next message is the answer to what he sends now
        await send(bob, "unfollow", {"topic": "releases"}, ack="u")
        assert (await recv(bob))["event"] == "__ack__"
        assert await push(served, "topic", "releases", {"title": "1.3"}) == 1
        assert (await recv_event(alice_tab1, "notification"))["payload"]["title"] == "1.3"
        assert await push(served, "user", "nobody", {"title": "lost"}) == 0


async def test_a_bad_key_is_refused_with_4001(serve: Serve) -> None:
    served = start(serve)
    async with connect(served.ws, additional_headers={"x-api-key": "wrong"}) as stranger:
        assert (await recv(stranger))["payload"]["code"] == "AUTH_ERROR"
        assert await close_code(stranger) == 4001
