"""socket.users in one process: every connection of a user id, addressed as one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from socketspec import Connection, SocketApp
from socketspec.connection import Identity
from socketspec.testing import ErrorReply, TestClient
from socketspec.users import USER_ROOM_PREFIX, is_user_room, user_room


class HeaderAuth:
    """The user id is the x-user header; no header is an anonymous connection."""

    async def authenticate(
        self, headers: Mapping[str, str], query_params: Mapping[str, str]
    ) -> Identity:
        user = headers.get("x-user")
        return Identity(user_id=user, authenticated=user is not None)


def make_app() -> tuple[SocketApp, list[str]]:
    app = SocketApp(auth=HeaderAuth())
    room_hooks: list[str] = []

    @app.on_room_join
    async def joined(conn: Connection, room: str) -> None:
        room_hooks.append(f"join {room}")

    @app.on_room_leave
    async def left(conn: Connection, room: str) -> None:
        room_hooks.append(f"leave {room}")

    @app.on("notify")
    async def notify(conn: Connection, payload: dict[str, Any]) -> int:
        return await app.users.emit(payload["user"], "note", {"text": payload["text"]})

    @app.on("count")
    async def count(conn: Connection, payload: dict[str, Any]) -> list[str]:
        return sorted(c.id for c in await app.users.connections(payload["user"]))

    @app.on("join")
    async def join(conn: Connection, payload: dict[str, Any]) -> str:
        await app.rooms.join(conn, payload["room"])
        return "joined"

    return app, room_hooks


def test_user_room_names_are_reserved() -> None:
    assert user_room("dana") == f"{USER_ROOM_PREFIX}dana"
    assert is_user_room(user_room("dana"))
    assert not is_user_room("chat:dana")


async def test_emit_reaches_every_connection_of_the_user_and_no_one_else() -> None:
    app, _ = make_app()
    async with TestClient(app) as client:
        phone = await client.connect(headers={"x-user": "dana"})
        laptop = await client.connect(headers={"x-user": "dana"})
        other = await client.connect(headers={"x-user": "eli"})
        anonymous = await client.connect()
        delivered = await other.call("notify", {"user": "dana", "text": "shipped"})
        assert delivered == 2
        assert (await phone.receive("note")) == {"text": "shipped"}
        assert (await laptop.receive("note")) == {"text": "shipped"}
        ids = await anonymous.call("count", {"user": "dana"})
        assert ids == sorted([phone.connection.id, laptop.connection.id])
        assert await app.users.emit("nobody", "note", {"text": "x"}) == 0
        assert await app.users.connections("nobody") == []
        with pytest.raises(TimeoutError):
            await other.receive("note", timeout=0.1)


async def test_user_room_is_invisible_to_the_room_api() -> None:
    app, hooks = make_app()
    async with TestClient(app) as client:
        conn = await client.connect(headers={"x-user": "dana"})
        assert conn.connection.rooms == set()
        with pytest.raises(ErrorReply) as refused:
            await conn.call("join", {"room": user_room("eli")})
        assert refused.value.code == "PERMISSION_ERROR"
        await conn.close()
    assert hooks == []
    assert await app.users.connections("dana") == []


async def test_disconnect_closes_every_connection_of_the_user() -> None:
    app, _ = make_app()
    async with TestClient(app) as client:
        await client.connect(headers={"x-user": "dana"})
        await client.connect(headers={"x-user": "dana"})
        keep = await client.connect(headers={"x-user": "eli"})
        assert await app.users.disconnect("dana", "banned") == 2
        assert await app.users.connections("dana") == []
        assert [c.id for c in app.connections] == [keep.connection.id]


async def test_a_refreshed_token_of_another_user_moves_the_address() -> None:
    class TokenAuth:
        async def authenticate(
            self, headers: Mapping[str, str], query_params: Mapping[str, str]
        ) -> Identity:
            token = query_params.get("token") or headers.get("authorization", "")[7:]
            return Identity(user_id=token or None, authenticated=bool(token))

    app = SocketApp(auth=TokenAuth())

    @app.on("noop")
    async def noop(conn: Connection) -> None:
        return None

    async with TestClient(app) as client:
        conn = await client.connect(auth_token="dana")
        assert [c.id for c in await app.users.connections("dana")] == [conn.id]
        await conn.call("__refresh_auth__", {"token": "eli"})
        assert await app.users.connections("dana") == []
        assert [c.id for c in await app.users.connections("eli")] == [conn.id]
