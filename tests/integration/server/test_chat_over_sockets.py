"""The chat example (``examples.chat:socket``) served by ``socketspec-cluster``, driven by
two ``socketspec.client`` connections and one ``websockets`` connection."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import websockets
from shardkit import ServerProcess

from socketspec.client import Client, ErrorReply, connect

_rooms = itertools.count()


@pytest.fixture(scope="module")
def chat_url() -> Iterator[str]:
    server = ServerProcess(["examples.chat:socket", "--port", "0"], env={"CHAT_JWT_SECRET": ""})
    try:
        port = server.wait_listening(30)
        yield f"ws://127.0.0.1:{port}{server.path}"
    finally:
        server.kill()


@pytest.fixture
def room() -> str:
    return f"room{next(_rooms)}"


class ThirdParty:
    """A ``websockets`` connection speaking the envelope protocol by hand."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.kept: list[dict[str, Any]] = []
        self.acks = itertools.count(1)

    async def next(
        self, matches: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        for index, message in enumerate(self.kept):
            if matches(message):
                return self.kept.pop(index)
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if matches(message):
                    return message
                self.kept.append(message)

    async def receive(self, event: str) -> Any:
        return (await self.next(lambda m: m.get("event") == event))["payload"]

    async def emit(self, event: str, payload: dict[str, Any], ack: Any = None) -> None:
        message: dict[str, Any] = {"event": event, "payload": payload}
        if ack is not None:
            message["ack"] = ack
        await self.ws.send(json.dumps(message))

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The whole reply: an ``__ack__`` or an ``__error__`` envelope."""
        ack = f"w{next(self.acks)}"
        await self.emit(event, payload, ack)
        return await self.next(
            lambda m: m.get("ack") == ack and m.get("event") in ("__ack__", "__error__")
        )


async def test_three_clients_chat_in_a_room_and_see_the_same_order(
    chat_url: str, room: str
) -> None:
    async with (
        connect(chat_url) as alice,
        connect(chat_url) as bob,
        websockets.connect(chat_url) as ws,
    ):
        carol = ThirdParty(ws)
        greeting = await carol.receive("__connect__")
        assert greeting["namespace"] == "/" and greeting["shard"] == 0
        assert (await carol.receive("welcome"))["room"] == "lobby"
        assert (await alice.receive("welcome"))["conn_id"] == alice.conn_id

        assert await alice.call("set_name", {"name": "alice"}) == {"name": "alice"}
        assert await bob.call("set_name", {"name": "bob"}) == {"name": "bob"}
        reply = await carol.call("set_name", {"name": "carol"})
        assert reply["event"] == "__ack__" and reply["payload"] == {"name": "carol"}

        assert await alice.call("join_room", {"room": room}) == {"room": room, "members": 1}
        assert await bob.call("join_room", {"room": room}) == {"room": room, "members": 2}
        assert await alice.receive("user_joined") == {"room": room, "user": "bob"}
        reply = await carol.call("join_room", {"room": room})
        assert reply["payload"] == {"room": room, "members": 3}
        assert await carol.receive("joined") == {"room": room, "members": 3}
        for member in (alice, bob):
            assert await member.receive("user_joined") == {"room": room, "user": "carol"}
        assert await alice.call("who_is_here", {"room": room}) == {
            "room": room,
            "members": ["alice", "bob", "carol"],
        }

        # Everyone talks at once; every member sees one and the same order.
        rounds = 10
        for n in range(rounds):
            await alice.emit("send_message", {"room": room, "text": f"a{n}"})
            await bob.emit("send_message", {"room": room, "text": f"b{n}"})
            await carol.emit("send_message", {"room": room, "text": f"c{n}"})
        seen: list[list[tuple[str, str]]] = []
        for member in (alice, bob):
            seen.append(
                [
                    ((m := await member.receive("new_message"))["sender"], m["text"])
                    for _ in range(3 * rounds)
                ]
            )
        seen.append(
            [
                ((m := await carol.receive("new_message"))["sender"], m["text"])
                for _ in range(3 * rounds)
            ]
        )
        assert seen[0] == seen[1] == seen[2]
        for name in ("alice", "bob", "carol"):  # each sender's messages in its own order
            assert [t for s, t in seen[0] if s == name] == [f"{name[0]}{n}" for n in range(rounds)]

        # acks carry the handler's result
        assert await bob.call("send_message", {"room": room, "text": "ack?"}) == {"delivered": 3}
        reply = await carol.call("send_message", {"room": room, "text": "ack!"})
        assert reply == {"event": "__ack__", "ack": reply["ack"], "payload": {"delivered": 3}}

        # the guarded admin room refuses users without the admin role
        with pytest.raises(ErrorReply) as denied:
            await alice.call("join_admin", {"section": "ops"})
        assert denied.value.code == "PERMISSION_ERROR"
        reply = await carol.call("join_admin", {"section": "ops"})
        assert reply["event"] == "__error__"
        assert reply["payload"]["code"] == "PERMISSION_ERROR"

        # a validation error is an error, not a disconnect
        with pytest.raises(ErrorReply) as invalid:
            await bob.call("join_room", {"room": "no spaces allowed"})
        assert invalid.value.code == "VALIDATION_ERROR"
        assert await bob.call("leave_room", {"room": room}) == {"left": room}
        assert await alice.receive("user_left") == {"room": room, "user": "bob"}
        assert await carol.receive("user_left") == {"room": room, "user": "bob"}


async def test_a_member_who_leaves_stops_receiving_and_the_others_do_not(
    chat_url: str, room: str
) -> None:
    clients: list[Client] = [await connect(chat_url) for _ in range(2)]
    try:
        first, second = clients
        await first.call("join_room", {"room": room})
        await second.call("join_room", {"room": room})
        await second.close()
        assert await first.call("send_message", {"room": room, "text": "alone"}) == {"delivered": 1}
        assert (await first.receive("new_message"))["text"] == "alone"
    finally:
        for client in clients:
            await client.close()
