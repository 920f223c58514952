"""examples/fastapi_chat.py over real sockets, under uvicorn and on the cluster."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from asgikit import recv, recv_event, send
from examplekit import Serve
from websockets.asyncio.client import connect


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def test_join_say_leave(serve: Serve) -> None:
    served = serve("fastapi_chat")
    async with connect(served.ws) as alice, connect(served.ws) as bob:
        await recv(alice)
        await recv(bob)
        await send(alice, "join", {"room": "lobby", "name": "alice"}, ack="a")
        assert (await recv_event(alice, "__ack__"))["payload"] == {"members": 1}
        await send(bob, "join", {"room": "lobby", "name": "bob"}, ack="b")
        assert (await recv_event(bob, "__ack__"))["payload"] == {"members": 2}
        joined = await recv_event(alice, "joined")
        assert joined["payload"] == {"room": "lobby", "name": "bob"}

        if served.has_rest:
            members = await asyncio.to_thread(get_json, served.http + "/rooms/lobby")
            assert members == {"room": "lobby", "members": ["alice", "bob"]}

        await send(bob, "say", {"room": "lobby", "text": "hi all"}, ack="s")
        for ws in (alice, bob):
            message = await recv_event(ws, "message")
            assert message["payload"] == {"room": "lobby", "name": "bob", "text": "hi all"}
        assert (await recv_event(bob, "__ack__"))["payload"] == {"delivered": 2}

        await send(bob, "leave", {"room": "lobby"}, ack="l")
        assert (await recv_event(alice, "left"))["payload"] == {"room": "lobby", "name": "bob"}


async def test_a_bad_room_name_is_a_validation_error(serve: Serve) -> None:
    served = serve("fastapi_chat")
    async with connect(served.ws) as ws:
        await recv(ws)
        await send(ws, "join", {"room": "no spaces here", "name": "x"}, ack="bad")
        error = await recv_event(ws, "__error__")
        assert (error["ack"], error["payload"]["code"]) == ("bad", "VALIDATION_ERROR")
