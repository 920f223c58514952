"""The Python blocks of the SocketSpec reference pages, as the pages have them (numbered
from 1, top to bottom): the one copy in the repository, read by the tests that run the pages
in process (tests/unit/reference) and by those that serve them through the adapter
(tests/integration/adapters/reference). The pages themselves are not in the repository.

This module owns the blocks' text and the few forms the tests derive from it (a block
without the adapter lines that serve it, the handlers a page's tests presume). It does not
run anything: how a block is executed is each test tree's business.
"""

from __future__ import annotations

BLOCKS: dict[str, dict[int, str]] = {
    "tutorial-first-event": {
        1: """\
from fastapi import FastAPI
from pydantic import BaseModel
from socketspec import SocketApp
from socketspec.adapters.fastapi import mount

socket = SocketApp(docs=True)

class EchoPayload(BaseModel):
    echo: str

@socket.on(
    "echo",
    description="Echo a message back to the sender.",
    tags=["demo"],
)
async def echo_handler(conn, payload: EchoPayload) -> None:
    await conn.emit("echo_response", {
        "echo": payload.echo,
        "from": conn.id,
    })

app = FastAPI()
mount(socket, app, path="/ws")
""",
        2: """\
async def handler(conn: Connection, payload: YourModel) -> None:
""",
        3: """\
import pytest
from socketspec.testing import TestClient

@pytest.mark.asyncio
async def test_echo():
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("echo", {"echo": "hello world"})
        response = await conn.receive()

        assert response["event"] == "echo_response"
        assert response["payload"]["echo"] == "hello world"
        assert "from" in response["payload"]
""",
    },
    "tutorial-payload-validation": {
        1: """\
from pydantic import BaseModel, Field

class SendMessage(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=500)

@socket.on("send_message")
async def send_message(conn, payload: SendMessage) -> None:
    # payload.room and payload.text are guaranteed valid here
    await socket.rooms.broadcast(f"chat:{payload.room}", "new_message", {
        "text": payload.text,
    })
""",
        2: """\
from typing import Literal

class JoinRoom(BaseModel):
    room_id: str
    role: Literal["member", "moderator"] = "member"
    mute: bool = False

@socket.on("join_room")
async def join_room(conn, payload: JoinRoom) -> None:
    # payload.role defaults to "member" if not provided
    await socket.rooms.join(conn, f"room:{payload.room_id}")
""",
        3: """\
from pydantic import BaseModel

class Recipient(BaseModel):
    user_id: str
    notify: bool = True

class DirectMessage(BaseModel):
    to: Recipient
    text: str

@socket.on("direct_message")
async def direct_message(conn, payload: DirectMessage) -> None:
    if payload.to.notify:
        # send push notification
        pass
""",
        4: """\
from pydantic import BaseModel, field_validator

class BidPayload(BaseModel):
    item_id: str
    amount: float

    @field_validator("amount")
    @classmethod
    def amount_must_be_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("Bid amount must be positive")
        return v
""",
        5: """\
@socket.on("ping")
async def ping(conn) -> None:
    await conn.emit("pong", {})
""",
        6: """\
socket = SocketApp(max_payload_size=1_048_576)  # 1 MB
""",
    },
    "tutorial-rooms": {
        1: """\
from socketspec import SocketApp
from socketspec.rooms import Room

socket = SocketApp(
    docs=True,
    rooms=[Room(name="lobby")],  # static room, always exists
)
""",
        2: """\
from pydantic import BaseModel

class JoinPayload(BaseModel):
    room_id: str

@socket.on("join_room", tags=["rooms"])
async def join_room(conn, payload: JoinPayload) -> None:
    room_name = f"chat:{payload.room_id}"
    await socket.rooms.join(conn, room_name)
    await conn.emit("joined", {"room": room_name})
""",
        3: """\
@socket.on("leave_room")
async def leave_room(conn, payload: JoinPayload) -> None:
    room_name = f"chat:{payload.room_id}"
    await socket.rooms.leave(conn, room_name)
    await conn.emit("left", {"room": room_name})
""",
        4: """\
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
""",
        5: """\
@socket.room_guard("admin:{room_id}")
async def admin_only(conn, room_id: str) -> bool:
    return conn.identity.role == "admin"
""",
        6: """\
@socket.room_guard("chat:{room_id}")
async def chat_guard(conn, room_id: str) -> bool:
    return conn.identity.is_authenticated

@socket.room_guard("admin:{section}")
async def admin_guard(conn, section: str) -> bool:
    return conn.identity.role == "admin"
""",
        7: """\
@socket.on_room_join
async def on_join(conn, room: str) -> None:
    print(f"{conn.id} joined {room}")

@socket.on_room_leave
async def on_leave(conn, room: str) -> None:
    print(f"{conn.id} left {room}")
""",
        8: """\
@socket.on("who_is_here")
async def who_is_here(conn, payload: JoinPayload) -> None:
    room_name = f"chat:{payload.room_id}"
    members = await socket.rooms.members(room_name)
    await conn.emit("members", {"room": room_name, "count": len(members)})
""",
        9: """\
@pytest.mark.asyncio
async def test_broadcast():
    async with TestClient(socket) as client:
        alice = await client.connect()
        bob   = await client.connect()

        await alice.send("join_room", {"room_id": "general"})
        await bob.send("join_room",   {"room_id": "general"})

        # Drain join confirmations
        await alice.receive()
        await bob.receive()

        # Alice broadcasts
        await alice.send("send_message", {"room_id": "general", "text": "hi"})

        # Bob receives the broadcast
        msg = await bob.receive()
        assert msg["event"] == "new_message"
        assert msg["payload"]["text"] == "hi"
""",
    },
    "socketapp": {
        1: """\
@socket.on(
    "send_message",
    description="Send a chat message.",
    tags=["chat"],
    emits=[Emits("message_ack", model=AckModel)],
    broadcasts=[Broadcasts("new_message", room="chat:{room}", model=MsgModel)],
    ordered=False,
    deprecated=False,
)
async def handler(conn: Connection, payload: MyModel) -> None: ...
""",
        2: """\
@socket.room_guard("admin:{section}")
async def guard(conn: Connection, section: str) -> bool:
    return conn.identity.role == "admin"
""",
        3: """\
@socket.middleware
async def log_events(conn, event, payload, next_handler):
    print(f"[{conn.id}] {event}")
    await next_handler(conn, event, payload)
""",
    },
    "how-to-testing": {
        1: """\
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
""",
        2: """\
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
""",
        3: """\
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
""",
        4: """\
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
""",
        5: """\
import asyncio

@pytest.mark.asyncio
async def test_no_response_expected():
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("fire_and_forget", {})

        with pytest.raises(asyncio.TimeoutError):
            await conn.receive(timeout=0.1)
""",
        6: """\
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
""",
        7: """\
async def test_something(conn):
    await conn.send("my_event", {"key": "value"})
    response = await conn.receive()
    assert response["event"] == "expected_response"
""",
    },
}


def block(page: str, number: int) -> str:
    return BLOCKS[page][number]


# "Register the Event" in the first tutorial ends with these lines (its two adapter imports
# are at the top of the block); the pages after it serve their app the same way.
ADAPTER_LINES = """\
from fastapi import FastAPI
from socketspec.adapters.fastapi import mount

app = FastAPI()
mount(socket, app, path="/ws")
"""


def without_adapter_lines(code: str) -> str:
    """``code`` without the lines of ``ADAPTER_LINES`` (each must stand in it exactly once),
    and without the blank lines that end it: a block's app as a TestClient runs it, serving
    it being the adapter's business."""
    lines = code.splitlines()
    for adapter_line in filter(None, ADAPTER_LINES.splitlines()):
        if lines.count(adapter_line) != 1:
            raise ValueError(f"{adapter_line!r} is not in the block exactly once")
        lines.remove(adapter_line)
    return "\n".join(lines).rstrip("\n") + "\n"


# What the testing how-to's tests send and the page never defines: an event that answers
# nothing and one answered by ``expected_response``.
HOW_TO_TESTING_PRESUMED = """\
@socket.on("fire_and_forget")
async def fire_and_forget(conn) -> None:
    pass

@socket.on("my_event")
async def my_event(conn, payload: dict) -> None:
    await conn.emit("expected_response", payload)
"""
