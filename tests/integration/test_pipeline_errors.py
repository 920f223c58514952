"""Every error code a client message can cause, its envelope, and the connection surviving it.

DESIGN section 3: ``{"event": "__error__", "payload": {"code", "event", "message",
"request_id", "details"}}``; handlers never kill a connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, Depends, SocketApp
from socketspec.errors import RESERVED_EVENTS, ErrorCode, EventError, RoomPermissionError
from socketspec.security.ratelimit import RateLimit
from socketspec.testing import TestClient

OK = 2.0
QUIET = 0.15
SECRET = "db-password=hunter2"

ERROR_PAYLOAD_KEYS = {"code", "event", "message", "request_id", "details"}
# Client → server system events the pipeline handles itself; every other reserved name is refused.
CLIENT_SYSTEM_EVENTS = {"__pong__", "__refresh_auth__"}


class Post(BaseModel):
    title: str
    votes: int = 0


def echo_app(**options: Any) -> SocketApp:
    """An app whose ``echo`` event acks its payload back, plus ``post`` validating ``Post``."""
    app = SocketApp(**options)

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return app


async def expect_error(
    conn: Any, code: str, *, event: str | None, ack: Any = None
) -> dict[str, Any]:
    """The next ``__error__`` envelope, checked against the wire format; returns its payload."""
    message = await conn.receive_message("__error__", timeout=OK)
    expected_keys = {"event", "payload"} if ack is None else {"event", "payload", "ack"}
    assert set(message) == expected_keys, message
    if ack is not None:
        assert message["ack"] == ack
        assert type(message["ack"]) is type(ack)
    payload = message["payload"]
    assert set(payload) == ERROR_PAYLOAD_KEYS, payload
    assert payload["code"] == code, payload
    assert payload["event"] == event, payload
    assert isinstance(payload["message"], str)
    assert payload["message"]
    assert isinstance(payload["request_id"], str)
    assert payload["request_id"]
    assert isinstance(payload["details"], dict)
    return payload


async def still_works(conn: Any) -> None:
    """The connection survived: it is open and a following good event is answered."""
    assert not conn.closed
    assert await conn.call("echo", {"still": "alive"}, timeout=OK) == {"still": "alive"}


def sized_message(total_bytes: int) -> str:
    """An acked ``echo`` message of exactly ``total_bytes`` UTF-8 bytes, mostly 3-byte chars."""
    template = '{"event":"echo","ack":1,"payload":{"t":"%s"}}'
    room = total_bytes - len((template % "").encode())
    euros, rest = divmod(room, len("€".encode()))
    message = template % ("€" * euros + "x" * rest)
    assert len(message.encode()) == total_bytes
    return message


# -- PAYLOAD_TOO_LARGE --------------------------------------------------------------------------


async def test_payload_too_large_counts_utf8_bytes_not_characters() -> None:
    app = echo_app(max_payload_size=100)
    async with TestClient(app).connect() as conn:
        fits = sized_message(100)
        await conn.send_raw(fits)  # exactly at the limit: admitted
        ack = await conn.receive_message("__ack__", timeout=OK)
        assert ack["payload"] == json.loads(fits)["payload"]
        too_big = sized_message(101)
        assert len(too_big) < 100  # fewer characters than the limit, more bytes
        await conn.send_raw(too_big)
        payload = await expect_error(conn, "PAYLOAD_TOO_LARGE", event=None)
        assert payload["details"] == {"max_payload_size": 100}
        with pytest.raises(TimeoutError):
            await conn.receive("__ack__", timeout=QUIET)
        await still_works(conn)


async def test_payload_too_large_for_binary_and_client_encoded_messages() -> None:
    app = echo_app(max_payload_size=100)
    async with TestClient(app).connect() as conn:
        await conn.send_raw(sized_message(101).encode())
        await expect_error(conn, "PAYLOAD_TOO_LARGE", event=None)
        await conn.emit("echo", {"t": "ü" * 60}, ack=9)  # 60 characters, 120 bytes of text
        await expect_error(conn, "PAYLOAD_TOO_LARGE", event=None)
        await still_works(conn)


# -- VALIDATION_ERROR ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "event"),
    [
        ("{oops", None),
        ("", None),
        ("[1, 2]", None),
        ('"just a string"', None),
        ("42", None),
        ('{"payload": {"a": 1}}', None),
        ('{"event": 7, "payload": {}}', None),
        ('{"event": "", "payload": {}}', None),
        ('{"event": "echo", "payload": [1, 2]}', "echo"),
        ('{"event": "echo", "payload": "text"}', "echo"),
    ],
    ids=[
        "bad-json",
        "empty",
        "array",
        "string",
        "number",
        "missing-event",
        "event-not-string",
        "event-empty",
        "payload-array",
        "payload-string",
    ],
)
async def test_malformed_message_is_a_validation_error(raw: str, event: str | None) -> None:
    app = echo_app()
    async with TestClient(app).connect() as conn:
        await conn.send_raw(raw)
        await expect_error(conn, "VALIDATION_ERROR", event=event)
        await still_works(conn)


async def test_pydantic_failure_lists_errors_and_skips_the_handler() -> None:
    app = echo_app()
    calls: list[Post] = []

    @app.on("post")
    async def post(conn: Connection, payload: Post) -> None:
        calls.append(payload)

    async with TestClient(app).connect() as conn:
        await conn.emit("post", {"votes": "many"})
        payload = await expect_error(conn, "VALIDATION_ERROR", event="post")
        errors = payload["details"]["errors"]
        by_field = {tuple(error["loc"]): error["type"] for error in errors}
        assert by_field == {("title",): "missing", ("votes",): "int_parsing"}
        assert "many" not in json.dumps(errors)  # the input is not echoed back
        await conn.wait_idle()
        assert calls == []
        await still_works(conn)


# -- RATE_LIMIT_ERROR ---------------------------------------------------------------------------


async def test_rate_limit_error_keeps_the_connection_open() -> None:
    app = echo_app(rate_limit=RateLimit(events=2, per_seconds=60))
    async with TestClient(app).connect() as conn:
        assert await conn.call("echo", {"n": 1}, timeout=OK) == {"n": 1}
        assert await conn.call("echo", {"n": 2}, timeout=OK) == {"n": 2}
        await conn.emit("echo", {"n": 3})
        payload = await expect_error(conn, "RATE_LIMIT_ERROR", event="echo")
        assert 0 < payload["details"]["retry_after"] <= 30
        with pytest.raises(TimeoutError):
            await conn.receive("__ack__", timeout=QUIET)
        assert not conn.closed
        await conn.connection.emit("server_push", {"still": "open"})
        assert await conn.receive("server_push", timeout=OK) == {"still": "open"}


async def test_rate_limited_connection_recovers_when_tokens_refill() -> None:
    app = echo_app(rate_limit=RateLimit(events=2, per_seconds=0.5))
    async with TestClient(app).connect() as conn:
        for n in range(2):
            await conn.emit("echo", {"n": n})
        await conn.emit("echo", {"n": 2})
        payload = await expect_error(conn, "RATE_LIMIT_ERROR", event="echo")
        await asyncio.sleep(payload["details"]["retry_after"] + 0.05)
        await still_works(conn)


# -- UNKNOWN_EVENT ------------------------------------------------------------------------------


async def test_unknown_event() -> None:
    app = echo_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("no_such_thing", {"x": 1})
        payload = await expect_error(conn, "UNKNOWN_EVENT", event="no_such_thing")
        assert "no_such_thing" in payload["message"]
        await still_works(conn)


@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS - CLIENT_SYSTEM_EVENTS))
async def test_reserved_name_sent_by_a_client_is_an_unknown_event(name: str) -> None:
    app = echo_app()
    async with TestClient(app).connect() as conn:
        await conn.emit(name, {"forged": True})
        await expect_error(conn, "UNKNOWN_EVENT", event=name)
        await still_works(conn)


# -- HANDLER_ERROR ------------------------------------------------------------------------------


def failing_app(**options: Any) -> SocketApp:
    app = echo_app(**options)

    @app.on("explode")
    async def explode(conn: Connection, payload: dict[str, Any]) -> None:
        raise RuntimeError(SECRET)

    return app


async def test_handler_error_hides_the_exception_and_logs_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="socketspec")
    async with TestClient(failing_app()).connect() as conn:
        await conn.emit("explode", {})
        payload = await expect_error(conn, "HANDLER_ERROR", event="explode")
        assert SECRET not in json.dumps(payload)
        assert "RuntimeError" not in json.dumps(payload)
        request_id = payload["request_id"]
        logged = [
            record
            for record in caplog.records
            if request_id in record.getMessage() and record.levelno >= logging.ERROR
        ]
        assert logged, "no error log line carries the request_id sent to the client"
        assert any(
            record.exc_info is not None and SECRET in str(record.exc_info[1]) for record in logged
        )
        await still_works(conn)


async def test_each_handler_error_has_its_own_request_id() -> None:
    async with TestClient(failing_app()).connect() as conn:
        await conn.emit("explode", {})
        await conn.emit("explode", {})
        first = await expect_error(conn, "HANDLER_ERROR", event="explode")
        second = await expect_error(conn, "HANDLER_ERROR", event="explode")
        assert first["request_id"] != second["request_id"]


async def test_handler_error_shows_the_exception_in_debug_mode() -> None:
    async with TestClient(failing_app(debug=True)).connect() as conn:
        await conn.emit("explode", {})
        payload = await expect_error(conn, "HANDLER_ERROR", event="explode")
        assert SECRET in payload["message"]
        await still_works(conn)


async def test_handler_error_from_a_dependency_or_a_middleware() -> None:
    app = echo_app()

    def broken_dependency() -> str:
        raise KeyError(SECRET)

    @app.middleware
    async def flaky(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        if payload.get("break_middleware"):
            raise ValueError(SECRET)
        return await next_handler(conn, event, payload)

    @app.on("needs_dep")
    async def needs_dep(conn: Connection, value: str = Depends(broken_dependency)) -> str:
        return value

    async with TestClient(app).connect() as conn:
        await conn.emit("needs_dep", {})
        payload = await expect_error(conn, "HANDLER_ERROR", event="needs_dep")
        assert SECRET not in json.dumps(payload)
        await conn.emit("echo", {"break_middleware": True})
        payload = await expect_error(conn, "HANDLER_ERROR", event="echo")
        assert SECRET not in json.dumps(payload)
        await still_works(conn)


# -- PERMISSION_ERROR ---------------------------------------------------------------------------


def deny(reason: str) -> None:
    raise RoomPermissionError(reason, details={"why": reason})


def check_membership(conn: Connection) -> None:
    deny("nested refusal")


def require_moderator(conn: Connection) -> str:
    raise RoomPermissionError("moderators only", details={"why": "dependency"})


async def test_permission_error_from_handler_helper_dependency_and_guard() -> None:
    app = echo_app()

    @app.on("direct")
    async def direct(conn: Connection, payload: dict[str, Any]) -> None:
        raise RoomPermissionError("direct refusal", details={"why": "direct"})

    @app.on("nested")
    async def nested(conn: Connection, payload: dict[str, Any]) -> None:
        check_membership(conn)

    @app.on("moderate")
    async def moderate(conn: Connection, who: str = Depends(require_moderator)) -> str:
        return who

    @app.room_guard("vault:{vault_id}")
    async def vault_guard(conn: Connection, vault_id: str) -> bool:
        return vault_id == "public"

    @app.on("enter_vault")
    async def enter_vault(conn: Connection, payload: dict[str, Any]) -> str:
        await app.rooms.join(conn, f"vault:{payload['vault_id']}")
        return "entered"

    async with TestClient(app).connect() as conn:
        await conn.emit("direct", {})
        payload = await expect_error(conn, "PERMISSION_ERROR", event="direct")
        assert (payload["message"], payload["details"]) == ("direct refusal", {"why": "direct"})

        await conn.emit("nested", {})
        payload = await expect_error(conn, "PERMISSION_ERROR", event="nested")
        assert payload["message"] == "nested refusal"

        await conn.emit("moderate", {})
        payload = await expect_error(conn, "PERMISSION_ERROR", event="moderate")
        assert payload["details"] == {"why": "dependency"}

        await conn.emit("enter_vault", {"vault_id": "gold"}, ack="v1")
        payload = await expect_error(conn, "PERMISSION_ERROR", event="enter_vault", ack="v1")
        assert payload["details"]["room"] == "vault:gold"
        assert "vault:gold" not in conn.connection.rooms

        assert await conn.call("enter_vault", {"vault_id": "public"}, timeout=OK) == "entered"
        assert "vault:public" in conn.connection.rooms
        await still_works(conn)


# -- ROOM_NOT_FOUND -----------------------------------------------------------------------------


async def test_strict_broadcast_to_a_missing_room_is_room_not_found() -> None:
    app = echo_app()

    @app.on("announce")
    async def announce(conn: Connection, payload: dict[str, Any]) -> int:
        return await app.rooms.broadcast(
            payload["room"], "announcement", {"text": "hi"}, strict=True
        )

    @app.on("join")
    async def join(conn: Connection, payload: dict[str, Any]) -> None:
        await app.rooms.join(conn, payload["room"])

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.emit("announce", {"room": "ghost-town"})
        payload = await expect_error(conn, "ROOM_NOT_FOUND", event="announce")
        assert payload["details"] == {"room": "ghost-town"}
        await still_works(conn)

        listener = await client.connect()
        await listener.emit("join", {"room": "square"})
        await listener.wait_idle()
        assert await conn.call("announce", {"room": "square"}, timeout=OK) == 1
        assert await listener.receive("announcement", timeout=OK) == {"text": "hi"}


# -- application-defined errors -----------------------------------------------------------------


class OutOfStock(EventError):
    code = ErrorCode.PERMISSION_ERROR


class InsufficientFunds(EventError):
    code = "INSUFFICIENT_FUNDS"  # type: ignore[assignment]


async def test_custom_event_error_subclass_passes_code_message_and_details() -> None:
    app = echo_app()

    @app.on("buy")
    async def buy(conn: Connection, payload: dict[str, Any]) -> None:
        raise OutOfStock(f"{payload['item']} is sold out", details={"item": payload["item"]})

    async with TestClient(app).connect() as conn:
        await conn.emit("buy", {"item": "lamp"})
        payload = await expect_error(conn, "PERMISSION_ERROR", event="buy")
        assert payload["message"] == "lamp is sold out"
        assert payload["details"] == {"item": "lamp"}
        await still_works(conn)


async def test_custom_event_error_with_its_own_code_passes_through() -> None:
    app = echo_app()

    @app.on("pay")
    async def pay(conn: Connection, payload: dict[str, Any]) -> None:
        raise InsufficientFunds("balance too low", details={"balance": 3})

    async with TestClient(app).connect() as conn:
        await conn.emit("pay", {}, ack=4)
        payload = await expect_error(conn, "INSUFFICIENT_FUNDS", event="pay", ack=4)
        assert payload["message"] == "balance too low"
        assert payload["details"] == {"balance": 3}
        await still_works(conn)


async def test_event_error_with_explicit_code_argument() -> None:
    app = echo_app()

    @app.on("strict_send")
    async def strict_send(conn: Connection, payload: dict[str, Any]) -> None:
        raise EventError("no such room", code=ErrorCode.ROOM_NOT_FOUND)

    async with TestClient(app).connect() as conn:
        await conn.emit("strict_send", {})
        payload = await expect_error(conn, "ROOM_NOT_FOUND", event="strict_send")
        assert payload["message"] == "no such room"
        await still_works(conn)
