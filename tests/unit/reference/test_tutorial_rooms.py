"""The rooms tutorial's code, run through the in-process TestClient.

The page's blocks do not all fit in one app: block 6 makes every ``chat:`` room
need an authenticated connection, while the page's own test (block 9) connects
without credentials and joins ``chat:general``. So two apps are built from the
page: ``open_rooms`` from every block but 6, where the page's test runs as
written, and ``guarded`` from blocks 1 to 8, whose guards are tested with
connections that carry an identity. The page's test uses ``pytest`` and
``TestClient`` without importing them (the testing how-to does); the prelude
imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pagecode import run_blocks
from reference_pages import block

from socketspec.connection import Identity
from socketspec.testing import TestClient, TestConnection

PAGE = "tutorial-rooms"

TEST_PRELUDE = """\
import pytest
from socketspec.testing import TestClient
"""


class HeaderAuth:
    """Who a test connection is, from ``x-user`` and ``x-role``; no header is anonymous."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        return Identity(user_id=headers.get("x-user"), role=headers.get("x-role"))


def admin_room_entrance(socket: Any) -> None:
    """The page guards ``admin:`` rooms but has no handler that joins one: this is it."""

    @socket.on("enter_admin")
    async def enter_admin(conn: Any, payload: dict[str, Any]) -> None:
        await socket.rooms.join(conn, f"admin:{payload['room_id']}")
        await conn.emit("entered", {"room": f"admin:{payload['room_id']}"})


APP_BLOCKS = {n: block(PAGE, n) for n in range(1, 9)}

open_rooms = run_blocks(PAGE, {n: code for n, code in APP_BLOCKS.items() if n != 6})
run_blocks(PAGE, {"prelude": TEST_PRELUDE, 9: block(PAGE, 9)}, open_rooms)
test_broadcast = open_rooms["test_broadcast"]
admin_room_entrance(open_rooms["socket"])

guarded = run_blocks(PAGE, APP_BLOCKS)
admin_room_entrance(guarded["socket"])
# The page's app takes no auth= (the tutorial is about rooms); these tests give it the
# backend a real app would have passed to SocketApp(auth=...).
guarded["socket"].auth = HeaderAuth()


async def count_in(conn: TestConnection, room_id: str) -> int:
    await conn.send("who_is_here", {"room_id": room_id})
    answer = await conn.receive("members")
    assert answer["room"] == f"chat:{room_id}"
    count: int = answer["count"]
    return count


async def test_a_static_room_exists_empty_and_a_chat_room_only_while_occupied() -> None:
    socket = open_rooms["socket"]
    async with TestClient(socket) as client:
        assert await socket.rooms.exists("lobby")
        assert not await socket.rooms.exists("chat:attic")
        conn = await client.connect()
        await conn.send("join_room", {"room_id": "attic"})
        assert await conn.receive("joined") == {"room": "chat:attic"}
        assert await socket.rooms.exists("chat:attic")
        await conn.send("leave_room", {"room_id": "attic"})
        assert await conn.receive("left") == {"room": "chat:attic"}
        assert not await socket.rooms.exists("chat:attic")
        assert await socket.rooms.exists("lobby")


async def test_conn_rooms_follows_joins_and_leaves() -> None:
    async with TestClient(open_rooms["socket"]) as client:
        conn = await client.connect()
        await conn.send("join_room", {"room_id": "a"})
        await conn.send("join_room", {"room_id": "b"})
        await conn.receive("joined")
        await conn.receive("joined")
        assert conn.connection.rooms == {"chat:a", "chat:b"}
        await conn.send("leave_room", {"room_id": "a"})
        await conn.receive("left")
        assert conn.connection.rooms == {"chat:b"}


async def test_a_disconnect_leaves_every_room_without_cleanup_code() -> None:
    async with TestClient(open_rooms["socket"]) as client:
        staying = await client.connect()
        going = await client.connect()
        for conn in (staying, going):
            await conn.send("join_room", {"room_id": "hall"})
            await conn.send("join_room", {"room_id": "porch"})
        assert await count_in(staying, "hall") == 2
        await going.close()
        assert await count_in(staying, "hall") == 1
        assert await count_in(staying, "porch") == 1
        assert going.connection.rooms == set()


async def test_a_broadcast_reaches_every_member_and_no_one_else() -> None:
    async with TestClient(open_rooms["socket"]) as client:
        alice = await client.connect()
        bob = await client.connect()
        outsider = await client.connect()
        await alice.send("join_room", {"room_id": "general"})
        await bob.send("join_room", {"room_id": "general"})
        await alice.receive("joined")
        await bob.receive("joined")
        await alice.send("send_message", {"room_id": "general", "text": "hi all"})
        expected = {"from": alice.id, "text": "hi all"}
        assert await bob.receive("new_message") == expected
        assert await alice.receive("new_message") == expected
        await outsider.wait_idle()
        assert all(m["event"] != "new_message" for m in outsider.pending())


async def test_who_is_here_counts_the_members() -> None:
    async with TestClient(open_rooms["socket"]) as client:
        first = await client.connect()
        second = await client.connect()
        assert await count_in(first, "den") == 0
        await first.send("join_room", {"room_id": "den"})
        await second.send("join_room", {"room_id": "den"})
        await first.receive("joined")
        await second.receive("joined")
        assert await count_in(first, "den") == 2


async def test_the_lifecycle_hooks_print_joins_and_leaves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with TestClient(open_rooms["socket"]) as client:
        conn = await client.connect()
        await conn.send("join_room", {"room_id": "kitchen"})
        await conn.receive("joined")
        await conn.send("leave_room", {"room_id": "kitchen"})
        await conn.receive("left")
        await conn.send("join_room", {"room_id": "garden"})
        await conn.receive("joined")
        await conn.close()
    assert capsys.readouterr().out.splitlines() == [
        f"{conn.id} joined chat:kitchen",
        f"{conn.id} left chat:kitchen",
        f"{conn.id} joined chat:garden",
        f"{conn.id} left chat:garden",
    ]


async def test_the_admin_guard_refuses_with_permission_error() -> None:
    async with TestClient(open_rooms["socket"]) as client:
        conn = await client.connect()
        await conn.send("enter_admin", {"room_id": "ops"})
        error = await conn.receive("__error__")
        await conn.wait_idle()
        assert conn.connection.rooms == set()
    assert error["code"] == "PERMISSION_ERROR"


async def test_chat_rooms_admit_only_authenticated_connections() -> None:
    async with TestClient(guarded["socket"]) as client:
        anonymous = await client.connect()
        await anonymous.send("join_room", {"room_id": "general"})
        assert (await anonymous.receive("__error__"))["code"] == "PERMISSION_ERROR"
        member = await client.connect(headers={"x-user": "ann"})
        await member.send("join_room", {"room_id": "general"})
        assert await member.receive("joined") == {"room": "chat:general"}
        await anonymous.wait_idle()
        assert anonymous.connection.rooms == set()
        assert member.connection.rooms == {"chat:general"}


@pytest.mark.parametrize(("role", "admitted"), [("admin", True), ("member", False), (None, False)])
async def test_admin_rooms_admit_only_the_admin_role(role: str | None, admitted: bool) -> None:
    headers = {"x-user": "sam"} | ({"x-role": role} if role else {})
    async with TestClient(guarded["socket"]) as client:
        conn = await client.connect(headers=headers)
        await conn.send("enter_admin", {"room_id": "billing"})
        if admitted:
            assert await conn.receive("entered") == {"room": "admin:billing"}
            assert conn.connection.rooms == {"admin:billing"}
        else:
            assert (await conn.receive("__error__"))["code"] == "PERMISSION_ERROR"
            assert conn.connection.rooms == set()
