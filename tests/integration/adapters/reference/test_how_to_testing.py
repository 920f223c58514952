"""The testing how-to's app served under uvicorn through the adapter, over real sockets: each
of its tests replayed by websockets clients, and its own in-process tests run while uvicorn
serves the same socket, a TestClient connection and a network one sharing a room.

The how-to's tests use events it never defines: ``join_room`` and ``send_message`` (the
rooms tutorial's blocks, unchanged), an event that answers nothing (``fire_and_forget``)
and one answered by ``expected_response`` (``my_event``); the test adds them.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from asgikit import StartUvicorn, close_code, recv, recv_event
from reference_pages import ADAPTER_LINES, HOW_TO_TESTING_PRESUMED, block
from refkit import client, emit, run_page, silent, two_clients
from websockets.asyncio.client import connect

from socketspec.testing import TestClient

PAGE = "how-to-testing"

# The page's JWT secret is short; PyJWT warns about that, and the page is run as written.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

AUTH_ADAPTER_LINES = """\
app_with_auth = FastAPI()
mount(socket_with_auth, app_with_auth, path="/ws")
"""


def page_app() -> dict[str, Any]:
    return run_page(
        PAGE,
        1,
        block("tutorial-rooms", 2),
        block("tutorial-rooms", 4),
        HOW_TO_TESTING_PRESUMED,
        2,
        3,
        4,
        5,
        ADAPTER_LINES,
        AUTH_ADAPTER_LINES,
    )


async def test_ping_pong(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await emit(ws, "ping", {"seq": 42})
        response = await recv(ws)
        assert response["event"] == "pong"
        assert response["payload"]["seq"] == 42


async def test_two_clients(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with two_clients(server.ws + "/ws") as ((alice, alice_id), (bob, bob_id)):
        assert alice_id != bob_id
        await emit(alice, "join_room", {"room_id": "general"})
        await emit(bob, "join_room", {"room_id": "general"})
        await recv(alice)
        await recv(bob)
        await emit(alice, "send_message", {"room_id": "general", "text": "hello"})
        msg = await recv(bob)
        assert msg["event"] == "new_message"


async def test_auth_required_and_success(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app_with_auth"])
    async with connect(server.ws + "/ws") as ws:  # no token
        error = await recv(ws)
        assert (error["event"], error["payload"]["code"]) == ("__error__", "AUTH_ERROR")
        assert await close_code(ws) == 4001
    token = jwt.encode({"sub": "user_123"}, "test-secret", algorithm="HS256")
    for options in (
        {"additional_headers": {"Authorization": f"Bearer {token}"}},
        {},  # a browser cannot set headers: the token in the query
    ):
        url = server.ws + "/ws" + ("" if options else f"?token={token}")
        async with connect(url, **options) as ws:
            greeting = await recv(ws)
            assert greeting["event"] == "__connect__"
            assert greeting["payload"]["user_id"] == "user_123"


async def test_room_join_hook(start_uvicorn: StartUvicorn) -> None:
    page = page_app()
    server = await start_uvicorn(page["app"])
    async with client(server.ws + "/ws") as (ws, conn_id):
        await emit(ws, "join_room", {"room_id": "general"})
        await recv(ws)  # drain the join confirmation
    assert (conn_id, "chat:general") in page["joined_rooms"]


async def test_no_response_expected(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await emit(ws, "fire_and_forget", {})
        await silent(ws, 0.3)


async def test_something(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await emit(ws, "my_event", {"key": "value"})
        response = await recv(ws)
        assert response["event"] == "expected_response"


async def test_the_pages_own_tests_pass_while_uvicorn_serves_the_socket(
    start_uvicorn: StartUvicorn,
) -> None:
    page = page_app()
    server = await start_uvicorn(page["app"])
    for name in ("test_ping_pong", "test_two_clients", "test_room_join_hook"):
        await page[name]()
    # One room, one TestClient connection and one over the network: the same entry points.
    async with TestClient(page["socket"]) as tests, client(server.ws + "/ws") as (ws, ws_id):
        in_process = await tests.connect()
        await in_process.send("join_room", {"room_id": "mixed"})
        await in_process.receive()
        await emit(ws, "join_room", {"room_id": "mixed"})
        await recv(ws)
        await in_process.send("send_message", {"room_id": "mixed", "text": "from the test"})
        assert (await recv_event(ws, "new_message"))["payload"]["text"] == "from the test"
        assert (await in_process.receive("new_message"))["text"] == "from the test"  # its own
        await emit(ws, "send_message", {"room_id": "mixed", "text": "from the network"})
        message = await in_process.receive("new_message")
        assert message == {"from": ws_id, "text": "from the network"}
