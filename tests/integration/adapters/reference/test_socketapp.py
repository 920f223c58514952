"""The SocketApp reference page served under uvicorn through the adapter, over real sockets:
its three blocks (a fully described handler, a room guard, a logging middleware), its
constructor parameters, lifecycle decorators, system events and error codes.

The page's blocks presume ``socket``, the models they name and the imports; the prelude
gives them. A handler whose body is ``...`` runs and answers nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from asgikit import StartUvicorn, close_code, recv, recv_event
from reference_pages import ADAPTER_LINES
from refkit import client, emit, get, run_page, silent
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from socketspec.connection import Identity
from socketspec.security.auth import APIKeyAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig

PAGE = "socketapp"

PRELUDE = """\
from pydantic import BaseModel
from socketspec import Broadcasts, Connection, Emits, SocketApp

class AckModel(BaseModel):
    ok: bool

class MsgModel(BaseModel):
    room: str
    text: str

class MyModel(BaseModel):
    room: str
    text: str

socket = SocketApp(docs=True, **settings)
"""

TEST_HANDLERS = """\
@socket.on("enter_admin")
async def enter_admin(conn, payload: dict) -> None:
    await socket.rooms.join(conn, f"admin:{payload['section']}")
    await conn.emit("entered", {})

@socket.on("explode")
async def explode(conn) -> None:
    raise RuntimeError("a bug in a handler")
"""


class HeaderAuth:
    """Who a connection is, from ``x-user`` and ``x-role``."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        return Identity(user_id=headers.get("x-user"), role=headers.get("x-role"))


def page_app(**settings: Any) -> dict[str, Any]:
    return run_page(
        PAGE, PRELUDE, 1, 2, 3, TEST_HANDLERS, ADAPTER_LINES, given={"settings": settings}
    )


async def test_the_handler_runs_behind_the_logging_middleware(
    start_uvicorn: StartUvicorn, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, conn_id):
        await emit(ws, "send_message", {"room": "r", "text": "hello"})
        await silent(ws)  # the handler answers nothing, and nothing went wrong
        await emit(ws, "send_message", {"room": "r"})
        assert (await recv(ws))["payload"]["code"] == "VALIDATION_ERROR"
    printed = capsys.readouterr().out.splitlines()
    assert printed.count(f"[{conn_id}] send_message") == 2


async def test_the_docs_describe_the_handler_as_registered(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    status, body = await asyncio.to_thread(get, server.http + "/socket-docs/schema")
    assert status == 200
    (event,) = [e for e in json.loads(body)["events"] if e["name"] == "send_message"]
    assert event["description"] == "Send a chat message."
    assert event["tags"] == ["chat"]
    assert [(e["event"], sorted(e["payload"]["properties"])) for e in event["emits"]] == [
        ("message_ack", ["ok"])
    ]
    (broadcast,) = event["broadcasts"]
    assert (broadcast["event"], broadcast["room"]) == ("new_message", "chat:{room}")
    assert (event["ordered"], event["deprecated"]) == (False, False)
    assert sorted(event["payload"]["properties"]) == ["room", "text"]


async def test_the_guard_admits_admins_only(start_uvicorn: StartUvicorn) -> None:
    page = page_app()
    page["socket"].auth = HeaderAuth()
    server = await start_uvicorn(page["app"])
    headers = {"x-user": "ann", "x-role": "member"}
    async with client(server.ws + "/ws", additional_headers=headers) as (ws, _):
        await emit(ws, "enter_admin", {"section": "billing"})
        assert (await recv(ws))["payload"]["code"] == "PERMISSION_ERROR"
    headers = {"x-user": "root", "x-role": "admin"}
    async with client(server.ws + "/ws", additional_headers=headers) as (ws, _):
        await emit(ws, "enter_admin", {"section": "billing"})
        assert (await recv(ws))["event"] == "entered"


async def test_error_codes_in_the_error_envelope(start_uvicorn: StartUvicorn) -> None:
    page = page_app(max_payload_size=2000)
    server = await start_uvicorn(page["app"])
    async with client(server.ws + "/ws") as (ws, _):
        sent: list[tuple[str, Any]] = [
            ("no_such_event", {}),
            ("send_message", {"room": 1}),
            ("send_message", {"room": "r", "text": "x" * 5000}),
            ("explode", {}),
        ]
        codes = []
        for event, payload in sent:
            await emit(ws, event, payload)
            error = await recv_event(ws, "__error__")
            assert set(error["payload"]) >= {"code", "message", "request_id", "details"}
            codes.append(error["payload"]["code"])
        assert codes == ["UNKNOWN_EVENT", "VALIDATION_ERROR", "PAYLOAD_TOO_LARGE", "HANDLER_ERROR"]

    limited = page_app(rate_limit=RateLimit(events=2, per_seconds=60))
    server = await start_uvicorn(limited["app"])
    async with client(server.ws + "/ws") as (ws, _):
        for _ in range(3):
            await emit(ws, "send_message", {"room": "r", "text": "t"})
        assert (await recv_event(ws, "__error__"))["payload"]["code"] == "RATE_LIMIT_ERROR"


async def test_auth_error_at_connect_time(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app(auth=APIKeyAuth({"k-1": "user-1"}))["app"])
    async with connect(server.ws + "/ws") as ws:
        assert (await recv(ws))["payload"]["code"] == "AUTH_ERROR"
        assert await close_code(ws) == 4001
    async with client(server.ws + "/ws", additional_headers={"x-api-key": "k-1"}) as (ws, _):
        await emit(ws, "send_message", {"room": "r", "text": "t"})
        await silent(ws)


async def test_constructor_parameters_through_the_adapter(start_uvicorn: StartUvicorn) -> None:
    page = page_app(
        docs_url="/our-docs",
        docs_access_token="let-me-in",
        allowed_origins=["https://app.example"],
        namespace="/chat",
    )
    server = await start_uvicorn(page["app"])
    assert (await asyncio.to_thread(get, server.http + "/our-docs"))[0] == 401
    bearer = {"Authorization": "Bearer let-me-in"}
    assert (await asyncio.to_thread(get, server.http + "/our-docs", bearer))[0] == 200
    assert (await asyncio.to_thread(get, server.http + "/socket-docs", bearer))[0] == 404
    origin = "https://app.example"
    async with client(server.ws + "/ws/chat", origin=origin) as (ws, _):  # type: ignore[arg-type]
        await emit(ws, "send_message", {"room": "r", "text": "t"})
        await silent(ws)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws + "/ws/chat", origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


async def test_lifecycle_decorators_and_system_events(start_uvicorn: StartUvicorn) -> None:
    page = page_app(session=SessionConfig(heartbeat_interval=0.2, heartbeat_timeout=5))
    socket = page["socket"]
    seen: list[tuple[str, Any]] = []
    closed = asyncio.Event()

    @socket.on_connect
    async def connected(conn: Any) -> None:
        seen.append(("connect", conn.id))

    @socket.on_disconnect
    async def disconnected(conn: Any, reason: str) -> None:
        seen.append(("disconnect", reason))
        closed.set()

    @socket.on_error
    async def failed(conn: Any, error: Exception) -> None:
        seen.append(("error", type(error).__name__))

    @socket.on_room_join
    async def joined(conn: Any, room: str) -> None:
        seen.append(("join", room))

    @socket.on_room_leave
    async def left(conn: Any, room: str) -> None:
        seen.append(("leave", room))

    page["socket"].auth = HeaderAuth()
    server = await start_uvicorn(page["app"])
    admin = {"x-user": "root", "x-role": "admin"}
    async with client(server.ws + "/ws", additional_headers=admin) as (ws, conn_id):
        ping = await recv_event(ws, "__ping__")
        await emit(ws, "__pong__", ping["payload"])
        await emit(ws, "explode", {})
        await recv_event(ws, "__error__")
        await emit(ws, "enter_admin", {"section": "ops"})
        await recv_event(ws, "entered")
    await asyncio.wait_for(closed.wait(), 5)
    assert seen == [
        ("connect", conn_id),
        ("error", "RuntimeError"),
        ("join", "admin:ops"),
        ("leave", "admin:ops"),
        ("disconnect", "client_close"),
    ]
