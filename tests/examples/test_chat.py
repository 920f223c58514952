"""The chat example (``examples/chat.py``) and its in-process demo (``examples/chat_demo.py``)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest

from socketspec.errors import ConnectRejected
from socketspec.testing import ErrorReply, TestClient, TestConnection

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRET = "chat-example-test-secret-0123456789abcdef"
QUIET = 0.15


def _load_chat() -> ModuleType:
    name = "socketspec_example_chat_under_test"
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


chat = _load_chat()


def token(sub: str, role: str | None = None) -> str:
    claims: dict[str, Any] = {"sub": sub}
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def silent(conn: TestConnection, event: str) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await conn.receive(event, timeout=QUIET)


async def error_code(conn: TestConnection, event: str, payload: dict[str, Any]) -> str | None:
    with pytest.raises(ErrorReply) as refused:
        await conn.call(event, payload)
    return refused.value.code


# -- connecting --------------------------------------------------------------------------------


async def test_connect_gets_a_welcome_and_joins_the_lobby() -> None:
    app = chat.create_app(None)
    async with TestClient(app) as client:
        conn = await client.connect()
        assert await conn.receive() == {
            "event": "welcome",
            "payload": {"conn_id": conn.id, "room": "lobby"},
        }
        assert conn.connection.rooms == {"lobby"}
        assert [m.id for m in await app.rooms.members("lobby")] == [conn.id]


async def test_connect_without_a_token_is_refused_when_a_secret_is_set() -> None:
    app = chat.create_app(SECRET)
    async with TestClient(app) as client:
        with pytest.raises(ConnectRejected):
            await client.connect()
        forged = jwt.encode({"sub": "eve", "role": "admin"}, "f" * 40, algorithm="HS256")
        with pytest.raises(ConnectRejected):
            await client.connect(auth_token=forged)
        assert app.connections == []
        assert await app.rooms.members("lobby") == []
        ok = await client.connect(headers={"Authorization": f"Bearer {token('dana')}"})
        assert ok.identity.user_id == "dana"
        assert (await ok.receive("welcome"))["conn_id"] == ok.id


async def test_open_app_needs_no_token() -> None:
    app = chat.create_app(None)
    assert app.auth is None
    async with TestClient(app).connect() as conn:
        assert conn.identity.user_id is None
        await conn.receive("welcome")


# -- rooms -------------------------------------------------------------------------------------


async def test_join_room_acks_with_the_member_count_and_emits_joined() -> None:
    app = chat.create_app(None)
    async with TestClient(app) as client:
        first = await client.connect()
        second = await client.connect()
        assert await first.call("join_room", {"room": "general"}) == {
            "room": "general",
            "members": 1,
        }
        assert await first.receive("joined") == {"room": "general", "members": 1}
        assert await second.call("join_room", {"room": "general"}) == {
            "room": "general",
            "members": 2,
        }
        assert await second.receive("joined") == {"room": "general", "members": 2}
        assert "chat:general" in first.connection.rooms
        assert {m.id for m in await app.rooms.members("chat:general")} == {first.id, second.id}


async def test_user_joined_goes_to_the_others_only() -> None:
    app = chat.create_app(SECRET)
    async with TestClient(app) as client:
        alice = await client.connect(auth_token=token("alice"))
        bob = await client.connect(auth_token=token("bob"))
        await alice.call("join_room", {"room": "general"})
        await bob.call("join_room", {"room": "general"})
        assert await alice.receive("user_joined") == {"room": "general", "user": "bob"}
        await silent(bob, "user_joined")
        await silent(alice, "user_joined")


async def test_leave_room_acks_tells_the_rest_and_stops_delivery() -> None:
    app = chat.create_app(SECRET)
    async with TestClient(app) as client:
        alice = await client.connect(auth_token=token("alice"))
        bob = await client.connect(auth_token=token("bob"))
        await alice.call("join_room", {"room": "general"})
        await bob.call("join_room", {"room": "general"})
        assert await bob.call("leave_room", {"room": "general"}) == {"left": "general"}
        assert "chat:general" not in bob.connection.rooms
        assert await alice.receive("user_left") == {"room": "general", "user": "bob"}
        await silent(bob, "user_left")
        await alice.call("send_message", {"room": "general", "text": "anyone?"})
        assert (await alice.receive("new_message"))["text"] == "anyone?"
        await silent(bob, "new_message")
        assert [m.id for m in await app.rooms.members("chat:general")] == [alice.id]


async def test_who_is_here_lists_display_names_sorted() -> None:
    app = chat.create_app(SECRET)
    async with TestClient(app) as client:
        zed = await client.connect(auth_token=token("zed"))
        amy = await client.connect(auth_token=token("amy"))
        loner = await client.connect(auth_token=token("loner"))
        await zed.call("join_room", {"room": "books"})
        await amy.call("join_room", {"room": "books"})
        assert await zed.call("set_name", {"name": "Mika"}) == {"name": "Mika"}
        assert await loner.call("who_is_here", {"room": "books"}) == {
            "room": "books",
            "members": ["Mika", "amy"],
        }
        assert await loner.call("who_is_here", {"room": "empty"}) == {
            "room": "empty",
            "members": [],
        }


# -- messages ----------------------------------------------------------------------------------


async def test_send_message_broadcasts_in_order_with_the_senders_name() -> None:
    app = chat.create_app(SECRET)
    (definition,) = [d for d in app.event_definitions() if d.name == "send_message"]
    assert definition.ordered is True
    async with TestClient(app) as client:
        alice = await client.connect(auth_token=token("alice"))
        bob = await client.connect(auth_token=token("bob"))
        await alice.call("join_room", {"room": "general"})
        await bob.call("join_room", {"room": "general"})
        for n in range(20):
            await alice.emit("send_message", {"room": "general", "text": f"line {n}"})
        received = [await bob.receive("new_message") for _ in range(20)]
        assert received == [
            {"room": "general", "sender": "alice", "text": f"line {n}"} for n in range(20)
        ]
        assert [(await alice.receive("new_message"))["text"] for _ in range(20)] == [
            f"line {n}" for n in range(20)
        ]
        assert await bob.call("send_message", {"room": "general", "text": "hi"}) == {"delivered": 2}


async def test_display_name_prefers_set_name_then_sub_then_short_id() -> None:
    open_app = chat.create_app(None)
    async with TestClient(open_app) as client:
        anon = await client.connect()
        listener = await client.connect()
        await listener.call("join_room", {"room": "names"})
        await anon.call("send_message", {"room": "names", "text": "who am i"})
        assert (await listener.receive("new_message"))["sender"] == anon.id[:8]
        await anon.call("set_name", {"name": "Nova"})
        await anon.call("send_message", {"room": "names", "text": "now named"})
        assert (await listener.receive("new_message"))["sender"] == "Nova"
    jwt_app = chat.create_app(SECRET)
    async with TestClient(jwt_app) as client:
        user = await client.connect(auth_token=token("u-77"))
        listener = await client.connect(auth_token=token("u-78"))
        await listener.call("join_room", {"room": "names"})
        await user.call("send_message", {"room": "names", "text": "by sub"})
        assert (await listener.receive("new_message"))["sender"] == "u-77"
        await user.call("set_name", {"name": "Orion"})
        await user.call("send_message", {"room": "names", "text": "by name"})
        assert (await listener.receive("new_message"))["sender"] == "Orion"


async def test_send_message_joins_the_sender_to_the_room() -> None:
    app = chat.create_app(None)
    async with TestClient(app).connect() as conn:
        assert await conn.call("send_message", {"room": "drive-by", "text": "hey"}) == {
            "delivered": 1
        }
        assert "chat:drive-by" in conn.connection.rooms


# -- guards and validation ---------------------------------------------------------------------


async def test_join_admin_is_for_admins_only() -> None:
    app = chat.create_app(SECRET)
    async with TestClient(app) as client:
        admin = await client.connect(auth_token=token("root", role="admin"))
        user = await client.connect(auth_token=token("bob"))
        assert await admin.call("join_admin", {"section": "ops"}) == {"joined": "admin:ops"}
        assert "admin:ops" in admin.connection.rooms
        assert await error_code(user, "join_admin", {"section": "ops"}) == "PERMISSION_ERROR"
        assert "admin:ops" not in user.connection.rooms
    open_app = chat.create_app(None)
    async with TestClient(open_app).connect() as anon:
        assert await error_code(anon, "join_admin", {"section": "ops"}) == "PERMISSION_ERROR"


@pytest.mark.parametrize("room", ["", "has space", "semi;colon", "slash/room", "x" * 65, "émoji"])
async def test_bad_room_names_are_validation_errors(room: str) -> None:
    app = chat.create_app(None)
    async with TestClient(app).connect() as conn:
        for event in ("join_room", "leave_room", "who_is_here"):
            assert await error_code(conn, event, {"room": room}) == "VALIDATION_ERROR"
        assert conn.connection.rooms == {"lobby"}


async def test_other_payload_limits_are_validation_errors() -> None:
    app = chat.create_app(None)
    async with TestClient(app).connect() as conn:
        bad = [
            ("send_message", {"room": "general", "text": ""}),
            ("send_message", {"room": "general", "text": "t" * 2001}),
            ("send_message", {"room": "", "text": "hi"}),
            ("set_name", {"name": ""}),
            ("set_name", {"name": "n" * 33}),
            ("join_admin", {"section": ""}),
            ("join_room", {}),
        ]
        for event, payload in bad:
            assert await error_code(conn, event, payload) == "VALIDATION_ERROR", (event, payload)
        assert await conn.call("join_room", {"room": "A-z_09"}) == {"room": "A-z_09", "members": 1}


async def test_chat_rooms_hold_at_most_100_members() -> None:
    app = chat.create_app(None)
    config = app.rooms.config_for("chat:general")
    assert config.max_members == 100
    assert app.rooms.config_for("lobby").name == "lobby"
    async with TestClient(app) as client:
        conns = [await client.connect() for _ in range(101)]
        for conn in conns[:100]:
            await conn.call("join_room", {"room": "general"})
        assert len(await app.rooms.members("chat:general")) == 100
        with pytest.raises(ErrorReply) as refused:
            await conns[100].call("join_room", {"room": "general"})
        assert refused.value.code == "PERMISSION_ERROR"
        assert "chat:general" not in conns[100].connection.rooms
        assert len(await app.rooms.members("chat:general")) == 100
        # a place frees up when someone leaves
        await conns[0].call("leave_room", {"room": "general"})
        assert await conns[100].call("join_room", {"room": "general"}) == {
            "room": "general",
            "members": 100,
        }


# -- the demo script ---------------------------------------------------------------------------


def test_chat_demo_runs_and_shows_the_refused_admin_join() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CHAT_JWT_SECRET"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "chat_demo.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=EXAMPLES.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    refused = [line for line in lines if "PERMISSION_ERROR" in line]
    assert len(refused) == 1
    assert refused[0].split("|")[0].strip() == "bob"
    assert any('"joined": "admin:ops"' in line for line in lines)
    assert any('"text": "hi alice"' in line for line in lines)
