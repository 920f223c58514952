"""The SocketApp reference page, run through the in-process TestClient.

The page's three blocks (an ``@socket.on`` with every option, a room guard and a
logging middleware) run as written on an app the prelude builds, with the models
and names the first block leaves to the reader. The tables of the page (the
constructor's parameters, the lifecycle decorators, the reserved system events,
the error codes and what triggers each) are held to account by the tests below
it, each on an app built for the purpose.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from pagecode import run_blocks
from pydantic import BaseModel
from reference_pages import block

from socketspec import Room, SocketApp
from socketspec.apidocs.schema import socketspec_schema
from socketspec.connection import Identity
from socketspec.errors import ERROR_CODES, RESERVED_EVENTS, ReservedEventNameError
from socketspec.errors import RoomPermissionError as RoomRefused
from socketspec.security.auth import APIKeyAuth, JWTAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig
from socketspec.testing import TestClient

PAGE = "socketapp"


class RoleAuth:
    """The role a test connection claims, from ``x-role``; anyone may connect."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        return Identity(user_id="someone", role=headers.get("x-role"))


PRELUDE = """\
from pydantic import BaseModel
from socketspec import Broadcasts, Connection, Emits, SocketApp

class MyModel(BaseModel):
    room: str
    text: str

class AckModel(BaseModel):
    ok: bool

class MsgModel(BaseModel):
    text: str

socket = SocketApp(auth=RoleAuth())
"""

# The prelude's app authenticates with RoleAuth, handed to the page's namespace.
page = run_blocks(
    PAGE,
    {"prelude": PRELUDE, **{n: block(PAGE, n) for n in (1, 2, 3)}},
    {"__name__": "page_socketapp", "RoleAuth": RoleAuth},
)
socket = page["socket"]
handled: list[Any] = []


@socket.on("record")
async def record(conn: Any, payload: dict[str, Any]) -> None:
    handled.append(payload)
    await conn.emit("recorded", payload)


# -- the constructor ---------------------------------------------------------------------------


def test_every_constructor_parameter_has_the_documented_default() -> None:
    app = SocketApp()
    assert app.docs is False
    assert app.docs_url == "/socket-docs"
    assert app.docs_access_token is None
    assert app.auth is None
    assert app.allowed_origins == ["*"]
    assert app.max_payload_size == 65536
    assert app.rate_limit is None
    assert app.session == SessionConfig()
    assert app.namespace == "/"


async def test_every_constructor_parameter_is_accepted_and_used() -> None:
    app = SocketApp(
        docs=True,
        docs_url="/events-ui",
        docs_access_token="ui-token",
        auth=APIKeyAuth("station-key"),
        backend="memory",
        allowed_origins=["https://app.example"],
        max_payload_size=2048,
        rate_limit=RateLimit(events=5, per_seconds=1),
        session=SessionConfig(idle_timeout=120),
        rooms=[Room(name="lobby")],
        namespace="/chat",
    )

    @app.on("hello")
    async def hello(conn: Any) -> None:
        await conn.emit("hi", {"namespace": conn.namespace})

    assert (app.docs, app.docs_url, app.docs_access_token) == (True, "/events-ui", "ui-token")
    assert (app.max_payload_size, app.session.idle_timeout, app.namespace) == (2048, 120, "/chat")
    async with TestClient(app, origin="https://app.example") as client:
        conn = await client.connect(headers={"x-api-key": "station-key"}, namespace="/chat")
        assert await app.rooms.exists("lobby")
        await conn.send("hello")
        assert await conn.receive("hi") == {"namespace": "/chat"}
        await conn.send_raw('{"event": "hello", "payload": {"pad": "' + "p" * 2048 + '"}}')
        assert (await conn.receive("__error__"))["code"] == "PAYLOAD_TOO_LARGE"


# -- the page's blocks -------------------------------------------------------------------------


def test_the_registered_event_carries_its_documentation() -> None:
    (doc,) = [e for e in socketspec_schema(socket)["events"] if e["name"] == "send_message"]
    assert doc["description"] == "Send a chat message."
    assert doc["tags"] == ["chat"]
    assert [e["event"] for e in doc["emits"]] == ["message_ack"]
    assert doc["emits"][0]["payload"]["properties"] == {"ok": {"title": "Ok", "type": "boolean"}}
    assert [(b["event"], b["room"]) for b in doc["broadcasts"]] == [("new_message", "chat:{room}")]
    assert doc["ordered"] is False
    assert doc["deprecated"] is False
    assert sorted(doc["payload"]["required"]) == ["room", "text"]


async def test_the_registered_handler_validates_and_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("send_message", {"room": "lobby", "text": "hi"})
        await conn.send("send_message", {"room": "lobby"})
        error = await conn.receive("__error__")
        await conn.wait_idle()
    assert error["code"] == "VALIDATION_ERROR"
    assert [m for m in conn.pending() if m["event"] == "__error__"] == []
    # the middleware saw both, the valid one and the refused one
    assert capsys.readouterr().out.count(f"[{conn.id}] send_message") == 2


async def test_the_guard_admits_admins_only() -> None:
    async with TestClient(socket) as client:
        admin = await client.connect(headers={"x-role": "admin"})
        guest = await client.connect(headers={"x-role": "guest"})
        await admin.join_room("admin:billing")
        with pytest.raises(RoomRefused):
            await guest.join_room("admin:billing")
        assert admin.connection.rooms == {"admin:billing"}
        assert guest.connection.rooms == set()


async def test_the_middleware_logs_each_event_and_passes_it_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handled.clear()
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("record", {"n": 1})
        assert await conn.receive("recorded") == {"n": 1}
    assert capsys.readouterr().out.splitlines() == [f"[{conn.id}] record"]
    assert handled == [{"n": 1}]


# -- lifecycle decorators ----------------------------------------------------------------------


async def test_each_lifecycle_decorator_receives_what_the_page_says() -> None:
    app = SocketApp()
    calls: list[tuple[Any, ...]] = []

    @app.on_connect
    async def connected(conn: Any) -> None:
        calls.append(("connect", conn.id))

    @app.on_disconnect
    async def disconnected(conn: Any, reason: str) -> None:
        calls.append(("disconnect", conn.id, reason))

    @app.on_error
    async def failed(conn: Any, error: Exception) -> None:
        calls.append(("error", conn.id, type(error).__name__, str(error)))

    @app.on_room_join
    async def joined(conn: Any, room: str) -> None:
        calls.append(("join", conn.id, room))

    @app.on_room_leave
    async def left(conn: Any, room: str) -> None:
        calls.append(("leave", conn.id, room))

    @app.on("fail")
    async def fail(conn: Any) -> None:
        raise LookupError("no such record")

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.join_room("den")
        await conn.leave_room("den")
        await conn.send("fail")
        assert (await conn.receive("__error__"))["code"] == "HANDLER_ERROR"
        await conn.close()
    assert calls == [
        ("connect", conn.id),
        ("join", conn.id, "den"),
        ("leave", conn.id, "den"),
        ("error", conn.id, "LookupError", "no such record"),
        ("disconnect", conn.id, "client_close"),
    ]


# -- system events -----------------------------------------------------------------------------

SYSTEM_EVENTS = [
    "__connect__",
    "__disconnect__",
    "__ping__",
    "__pong__",
    "__error__",
    "__auth_expiring__",
    "__session_expiring__",
    "__idle_warning__",
    "__server_shutdown__",
    "__refresh_auth__",
    "__ack__",  # not in the page's table: reserved by DESIGN section 3 as well
]


@pytest.mark.parametrize("name", SYSTEM_EVENTS)
async def test_a_system_event_cannot_have_a_handler(name: str) -> None:
    assert name in RESERVED_EVENTS
    app = SocketApp()

    @app.on(name)
    async def mine(conn: Any) -> None:  # pragma: no cover - must never run
        return None

    # Refused at startup, however the app is started.
    with pytest.raises(ReservedEventNameError):
        async with TestClient(app):
            pass
    with pytest.raises(ReservedEventNameError):
        async with TestClient(app).connect():
            pass
    with pytest.raises(ReservedEventNameError):
        app.startup()


async def test_the_server_sends_connect_and_ping_and_consumes_pong() -> None:
    app = SocketApp(session=SessionConfig(heartbeat_interval=0.05, heartbeat_timeout=5))

    @app.on("noop")
    async def noop(conn: Any) -> None:
        return None

    async with TestClient(app, auto_pong=False) as client:
        conn = await client.connect()
        greeting = await conn.receive("__connect__")
        assert greeting["conn_id"] == conn.id
        assert await conn.receive("__ping__", timeout=5) is not None
        await conn.send("__pong__", {})
        await conn.wait_idle()
        assert all(m["event"] != "__error__" for m in conn.pending())
        assert not conn.closed


# -- error codes -------------------------------------------------------------------------------

PAGE_ERROR_CODES = {
    "AUTH_ERROR",
    "AUTH_EXPIRED",
    "HANDLER_ERROR",
    "IDLE_TIMEOUT",
    "PAYLOAD_TOO_LARGE",
    "PERMISSION_ERROR",
    "RATE_LIMIT_ERROR",
    "ROOM_NOT_FOUND",
    "SESSION_EXPIRED",
    "UNKNOWN_EVENT",
    "VALIDATION_ERROR",
}


# Ours besides the reference's: a recovery token refused (docs/compatibility.md lists them).
RECOVERY_ERROR_CODES = {"RECOVERY_INVALID", "RECOVERY_EXPIRED", "RECOVERY_FOREIGN"}


def test_the_error_codes_are_the_pages() -> None:
    assert set(ERROR_CODES) == PAGE_ERROR_CODES | RECOVERY_ERROR_CODES
    compatibility = (Path(__file__).resolve().parents[3] / "docs" / "compatibility.md").read_text()
    assert all(f"`{code}`" in compatibility for code in RECOVERY_ERROR_CODES)


class Count(BaseModel):
    n: int


def app_for_errors(**kwargs: Any) -> SocketApp:
    app = SocketApp(**kwargs)

    @app.on("ok")
    async def ok(conn: Any) -> None:
        return None

    @app.on("typed")
    async def typed(conn: Any, payload: Count) -> None:
        return None

    @app.on("crash")
    async def crash(conn: Any) -> None:
        raise ValueError("internal detail")

    @app.on("enter")
    async def enter(conn: Any, payload: dict[str, str]) -> None:
        await app.rooms.join(conn, payload["room"])

    @app.on("announce")
    async def announce(conn: Any, payload: dict[str, str]) -> None:
        await app.rooms.broadcast(payload["room"], "news", {}, strict=True)

    @app.room_guard("vault:{name}")
    async def vault(conn: Any, name: str) -> bool:
        return False

    return app


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ('{"event": "nobody_handles_this"}', "UNKNOWN_EVENT"),
        ('{"event": "typed", "payload": {"n": "many"}}', "VALIDATION_ERROR"),
        ("not json at all", "VALIDATION_ERROR"),
        ('{"event": "crash"}', "HANDLER_ERROR"),
        ('{"event": "enter", "payload": {"room": "vault:gold"}}', "PERMISSION_ERROR"),
        ('{"event": "announce", "payload": {"room": "nowhere"}}', "ROOM_NOT_FOUND"),
        ('{"event": "ok", "payload": {"pad": "' + "p" * 70_000 + '"}}', "PAYLOAD_TOO_LARGE"),
    ],
)
async def test_each_event_error_arrives_in_the_error_envelope(raw: str, code: str) -> None:
    async with TestClient(app_for_errors()) as client:
        conn = await client.connect()
        await conn.send_raw(raw)
        message = await conn.receive_message("__error__")
        assert not conn.closed
    assert message["payload"]["code"] == code
    assert {"code", "message", "request_id", "details"} <= set(message["payload"])
    assert "internal detail" not in message["payload"]["message"]


async def test_an_exhausted_token_bucket_is_a_rate_limit_error() -> None:
    async with TestClient(app_for_errors(rate_limit=RateLimit(events=2, per_seconds=60))) as client:
        conn = await client.connect()
        for _ in range(3):
            await conn.send("ok")
        assert (await conn.receive_error())["code"] == "RATE_LIMIT_ERROR"


async def test_failed_authentication_at_connect_is_an_auth_error() -> None:
    async with TestClient(app_for_errors(auth=APIKeyAuth("right-key"))) as client:
        with pytest.raises(RuntimeError) as refused:
            await client.connect(headers={"x-api-key": "wrong-key"})
    assert refused.value.error["code"] == "AUTH_ERROR"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("session", "code", "close_code"),
    [
        (SessionConfig(idle_timeout=0.2), "IDLE_TIMEOUT", 4004),
        (SessionConfig(max_duration=0.2), "SESSION_EXPIRED", 4003),
    ],
)
async def test_session_limits_end_with_their_error(
    session: SessionConfig, code: str, close_code: int
) -> None:
    async with TestClient(app_for_errors(session=session)) as client:
        conn = await client.connect()
        assert (await conn.receive_error(timeout=5))["code"] == code
        assert await conn.wait_closed(timeout=5) == close_code


async def test_a_token_expiring_mid_session_is_an_auth_expired_error() -> None:
    secret = "socketapp-page-secret-long-enough-for-hs256"
    app = app_for_errors(auth=JWTAuth(secret))
    token = jwt.encode({"sub": "u1", "exp": int(time.time()) + 2}, secret, algorithm="HS256")
    async with TestClient(app, auth_token=token) as client:
        conn = await client.connect()
        assert (await conn.receive_error(timeout=6))["code"] == "AUTH_EXPIRED"
        assert await conn.wait_closed(timeout=5) == 4002
