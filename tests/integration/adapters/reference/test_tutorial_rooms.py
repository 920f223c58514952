"""The rooms tutorial's blocks served under uvicorn through the adapter, over real sockets.

Block 6 makes every ``chat:`` room need an authenticated connection, while the page's own
test (block 9) joins ``chat:general`` without credentials: so two apps are built from the
page, ``open_rooms`` (every app block but 6) and ``guarded`` (blocks 1 to 8, given an auth
backend that reads who the client is from two headers). The page guards ``admin:`` rooms
but no handler of it joins one; the test adds ``enter_admin``. Block 9's steps are
replayed by two websockets clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from asgikit import StartUvicorn, recv, recv_event
from reference_pages import ADAPTER_LINES
from refkit import client, emit, run_page, two_clients

from socketspec.connection import Identity

PAGE = "tutorial-rooms"

ENTER_ADMIN = """\
@socket.on("enter_admin")
async def enter_admin(conn, payload: dict) -> None:
    await socket.rooms.join(conn, f"admin:{payload['room_id']}")
    await conn.emit("entered", {"room": f"admin:{payload['room_id']}"})
"""


class HeaderAuth:
    """Who a connection is, from ``x-user`` and ``x-role``; without them it is anonymous."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        return Identity(user_id=headers.get("x-user"), role=headers.get("x-role"))


def open_rooms() -> dict[str, Any]:
    return run_page(PAGE, 1, 2, 3, 4, 5, 7, 8, ENTER_ADMIN, ADAPTER_LINES)


def guarded() -> dict[str, Any]:
    page = run_page(PAGE, 1, 2, 3, 4, 5, 6, 7, 8, ENTER_ADMIN, ADAPTER_LINES)
    # The page's SocketApp takes no auth= (it is about rooms): a real app would pass one.
    page["socket"].auth = HeaderAuth()
    return page


async def count_in(ws: Any, room_id: str) -> int:
    await emit(ws, "who_is_here", {"room_id": room_id})
    answer = await recv_event(ws, "members")
    assert answer["payload"]["room"] == f"chat:{room_id}"
    count: int = answer["payload"]["count"]
    return count


async def test_the_pages_broadcast_between_two_clients(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(open_rooms()["app"])
    async with two_clients(server.ws + "/ws") as ((alice, alice_id), (bob, _)):
        await emit(alice, "join_room", {"room_id": "general"})
        await emit(bob, "join_room", {"room_id": "general"})
        # Drain join confirmations
        assert await recv(alice) == {"event": "joined", "payload": {"room": "chat:general"}}
        assert await recv(bob) == {"event": "joined", "payload": {"room": "chat:general"}}
        # Alice broadcasts; Bob (and Alice, a member too) receive it
        await emit(alice, "send_message", {"room_id": "general", "text": "hi"})
        for ws in (bob, alice):
            msg = await recv(ws)
            assert msg == {"event": "new_message", "payload": {"from": alice_id, "text": "hi"}}


async def test_leaving_listing_and_disconnecting(start_uvicorn: StartUvicorn) -> None:
    page = open_rooms()
    gone = asyncio.Event()
    page["socket"].on_disconnect(lambda conn, reason: gone.set())
    server = await start_uvicorn(page["app"])
    async with client(server.ws + "/ws") as (alice, _):
        await emit(alice, "join_room", {"room_id": "attic"})
        await recv_event(alice, "joined")
        async with client(server.ws + "/ws") as (bob, _):
            await emit(bob, "join_room", {"room_id": "attic"})
            await recv_event(bob, "joined")
            assert await count_in(alice, "attic") == 2
        # Bob disconnected: he left every room by himself (before the disconnect hooks ran)
        await asyncio.wait_for(gone.wait(), 5)
        assert await count_in(alice, "attic") == 1
        await emit(alice, "leave_room", {"room_id": "attic"})
        assert await recv_event(alice, "left") == {
            "event": "left",
            "payload": {"room": "chat:attic"},
        }
        assert await count_in(alice, "attic") == 0
        assert await page["socket"].rooms.exists("lobby")  # the static room stays


async def test_the_lifecycle_hooks_print_joins_and_leaves(
    start_uvicorn: StartUvicorn, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_uvicorn(open_rooms()["app"])
    async with client(server.ws + "/ws") as (ws, conn_id):
        await emit(ws, "join_room", {"room_id": "hooks"})
        await recv_event(ws, "joined")
        await emit(ws, "leave_room", {"room_id": "hooks"})
        await recv_event(ws, "left")
    printed = capsys.readouterr().out
    assert f"{conn_id} joined chat:hooks" in printed
    assert f"{conn_id} left chat:hooks" in printed


async def test_the_admin_guard_refuses_with_permission_error(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(guarded()["app"])
    member = {"x-user": "ann", "x-role": "member"}
    admin = {"x-user": "root", "x-role": "admin"}
    async with client(server.ws + "/ws", additional_headers=member) as (ws, _):
        await emit(ws, "enter_admin", {"room_id": "billing"})
        error = await recv_event(ws, "__error__")
        assert error["payload"]["code"] == "PERMISSION_ERROR"
        # the connection goes on
        await emit(ws, "join_room", {"room_id": "general"})
        assert (await recv(ws))["event"] == "joined"
    async with client(server.ws + "/ws", additional_headers=admin) as (ws, _):
        await emit(ws, "enter_admin", {"room_id": "billing"})
        assert await recv(ws) == {"event": "entered", "payload": {"room": "admin:billing"}}


async def test_chat_rooms_need_an_authenticated_connection(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(guarded()["app"])
    async with client(server.ws + "/ws") as (anonymous, _):
        await emit(anonymous, "join_room", {"room_id": "general"})
        error = await recv_event(anonymous, "__error__")
        assert error["payload"]["code"] == "PERMISSION_ERROR"
    async with client(server.ws + "/ws", additional_headers={"x-user": "ann"}) as (ws, _):
        await emit(ws, "join_room", {"room_id": "general"})
        assert (await recv(ws))["event"] == "joined"
