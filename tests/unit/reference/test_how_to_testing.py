"""The testing how-to's code, run as written: its tests are collected here.

The how-to's tests talk to events it never defines: ``join_room`` with a
confirmation and ``send_message`` broadcasting ``new_message`` to ``chat:{room_id}``
(the rooms tutorial's handlers, whose blocks are reused unchanged), an event
that answers nothing (``fire_and_forget``) and one answered by
``expected_response`` (``my_event``). The prelude adds them to the how-to's app.
Its conftest block imports the app from ``myapp.main``, which is made to stand
for that module while the block runs; its fixtures and the test that uses them
are then collected here like the others.

One test is not collected as written: ``test_auth_required`` connects without a
token and asserts nothing, trusting that "TestClient surfaces auth errors". It
does, by raising; the test below runs it and reads what was raised.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pagecode import importable_as, run_blocks

from socketspec.errors import ConnectionAuthError, ConnectRejected

PAGE = "how-to-testing"

# The page's JWT secret is short; PyJWT warns about that, and the page is run as written.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

# "Basic Pattern"
BLOCK_1 = """\
import pytest
from socketspec import SocketApp
from socketspec.testing import TestClient
from pydantic import BaseModel

socket = SocketApp()

class Ping(BaseModel):
    seq: int

@socket.on("ping")
async def ping(conn, payload: Ping) -> None:
    await conn.emit("pong", {"seq": payload.seq})


@pytest.mark.asyncio
async def test_ping_pong():
    async with TestClient(socket) as client:
        conn = await client.connect()

        await conn.send("ping", {"seq": 42})

        response = await conn.receive()
        assert response["event"] == "pong"
        assert response["payload"]["seq"] == 42
"""

# The rooms tutorial's "Joining a Room" and "Broadcasting to a Room" blocks.
ROOMS_JOIN = """\
from pydantic import BaseModel

class JoinPayload(BaseModel):
    room_id: str

@socket.on("join_room", tags=["rooms"])
async def join_room(conn, payload: JoinPayload) -> None:
    room_name = f"chat:{payload.room_id}"
    await socket.rooms.join(conn, room_name)
    await conn.emit("joined", {"room": room_name})
"""

ROOMS_BROADCAST = """\
class ChatMessage(BaseModel):
    room_id: str
    text: str

@socket.on("send_message")
async def send_message(conn, payload: ChatMessage) -> None:
    await socket.rooms.broadcast(
        f"chat:{payload.room_id}",
        "new_message",
        {"from": conn.id, "text": payload.text},
    )
"""

# What the how-to's tests send and the page never defines.
PRESUMED = """\
@socket.on("fire_and_forget")
async def fire_and_forget(conn) -> None:
    pass

@socket.on("my_event")
async def my_event(conn, payload: dict) -> None:
    await conn.emit("expected_response", payload)
"""

# "Testing Multiple Connections"
BLOCK_2 = """\
@pytest.mark.asyncio
async def test_two_clients():
    async with TestClient(socket) as client:
        alice = await client.connect()
        bob   = await client.connect()

        # Each connection has its own ID
        assert alice.id != bob.id

        await alice.send("join_room", {"room_id": "general"})
        await bob.send("join_room",   {"room_id": "general"})

        # Drain join confirmations
        await alice.receive()
        await bob.receive()

        await alice.send("send_message", {"room_id": "general", "text": "hello"})
        msg = await bob.receive()
        assert msg["event"] == "new_message"
"""

# "Testing Authentication"
BLOCK_3 = """\
from socketspec.security.auth import JWTAuth
import jwt

socket_with_auth = SocketApp(
    auth=JWTAuth(secret="test-secret", algorithm="HS256"),
)

@pytest.mark.asyncio
async def test_auth_required():
    async with TestClient(socket_with_auth) as client:
        # No token — should fail
        conn = await client.connect()
        # Connection should be None or closed on auth failure
        # (behaviour depends on your adapter; TestClient surfaces auth errors)

@pytest.mark.asyncio
async def test_auth_success():
    token = jwt.encode({"sub": "user_123"}, "test-secret", algorithm="HS256")
    async with TestClient(socket_with_auth) as client:
        conn = await client.connect(headers={"Authorization": f"Bearer {token}"})
        assert conn is not None
        assert conn.identity.user_id == "user_123"
"""

# "Testing Lifecycle Hooks"
BLOCK_4 = """\
joined_rooms = []

@socket.on_room_join
async def track_joins(conn, room: str) -> None:
    joined_rooms.append((conn.id, room))

@pytest.mark.asyncio
async def test_room_join_hook():
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("join_room", {"room_id": "general"})
        await conn.receive()  # drain the join confirmation

        assert any(r[1] == "chat:general" for r in joined_rooms)
"""

# "Receive with Timeout"
BLOCK_5 = """\
import asyncio

@pytest.mark.asyncio
async def test_no_response_expected():
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("fire_and_forget", {})

        with pytest.raises(asyncio.TimeoutError):
            await conn.receive(timeout=0.1)
"""

# "conftest.py Pattern"
BLOCK_6 = """\
# tests/conftest.py
import pytest
from socketspec.testing import TestClient
from myapp.main import socket  # your SocketApp instance

@pytest.fixture
async def client():
    async with TestClient(socket) as c:
        yield c

@pytest.fixture
async def conn(client):
    return await client.connect()
"""

BLOCK_7 = """\
async def test_something(conn):
    await conn.send("my_event", {"key": "value"})
    response = await conn.receive()
    assert response["event"] == "expected_response"
"""

page = run_blocks(
    PAGE,
    {
        1: BLOCK_1,
        "rooms tutorial, joining": ROOMS_JOIN,
        "rooms tutorial, broadcasting": ROOMS_BROADCAST,
        "presumed handlers": PRESUMED,
    },
)
run_blocks(PAGE, {2: BLOCK_2, 3: BLOCK_3, 4: BLOCK_4, 5: BLOCK_5}, page)

# The page's tests, collected as written.
test_ping_pong = page["test_ping_pong"]
test_two_clients = page["test_two_clients"]
test_auth_success = page["test_auth_success"]
test_room_join_hook = page["test_room_join_hook"]
test_no_response_expected = page["test_no_response_expected"]

# The conftest pattern: its own module, importing the app from where the page says.
conftest_pattern: dict[str, Any] = {"__name__": "page_conftest"}
with importable_as("myapp.main", socket=page["socket"]):
    run_blocks(PAGE, {6: BLOCK_6}, conftest_pattern)
client = conftest_pattern["client"]
conn = conftest_pattern["conn"]
test_something = run_blocks(PAGE, {7: BLOCK_7})["test_something"]


async def test_auth_required_surfaces_the_refusal_as_an_error_to_read() -> None:
    with pytest.raises(ConnectRejected) as refused:
        await page["test_auth_required"]()
    assert isinstance(refused.value, ConnectionAuthError)
    assert isinstance(refused.value, RuntimeError)
    assert refused.value.code == 4001
    assert refused.value.reason == "missing token"
    assert refused.value.error is not None
    assert refused.value.error["code"] == "AUTH_ERROR"
    assert page["socket_with_auth"].connections == []


async def test_the_hook_saw_the_connection_and_the_room() -> None:
    page["joined_rooms"].clear()
    async with page["TestClient"](page["socket"]) as testing_client:
        joiner = await testing_client.connect()
        await joiner.send("join_room", {"room_id": "general"})
        assert await joiner.receive("joined") == {"room": "chat:general"}
    assert page["joined_rooms"] == [(joiner.id, "chat:general")]


def test_the_conftest_block_left_no_stand_in_module_behind() -> None:
    assert "myapp" not in sys.modules
    assert "myapp.main" not in sys.modules
