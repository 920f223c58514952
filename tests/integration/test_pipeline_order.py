"""The inbound pipeline's order, proved through its observable effects.

DESIGN section 4: size check, JSON parse, rate limit, session touch (``__pong__``
is consumed there), middleware chain, handler lookup, pydantic validation,
dependencies, handler. Every test drives the application through ``TestClient``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, Depends, SocketApp
from socketspec.security.ratelimit import RateLimit
from socketspec.testing import ErrorReply, TestClient

OK = 2.0  # timeout of a receive that must succeed
QUIET = 0.15  # timeout of a receive that must time out
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


class Note(BaseModel):
    text: str


STAGES: list[str] = []


class Traced(BaseModel):
    value: int

    def model_post_init(self, context: Any) -> None:
        STAGES.append("validation")


def rate_limited_app(max_payload_size: int = 65536) -> tuple[SocketApp, list[str]]:
    """An app allowing two events a minute, whose middleware records what reaches it."""
    app = SocketApp(
        max_payload_size=max_payload_size, rate_limit=RateLimit(events=2, per_seconds=60)
    )
    seen: list[str] = []

    @app.middleware
    async def record(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        seen.append(event)
        return await next_handler(conn, event, payload)

    @app.on("note")
    async def note(conn: Connection, payload: Note) -> dict[str, str]:
        return {"got": payload.text}

    return app, seen


async def assert_two_tokens_left(conn: Any) -> None:
    """Exactly two events pass, the third is refused: no token was spent before."""
    assert await conn.call("note", {"text": "a"}, timeout=OK) == {"got": "a"}
    assert await conn.call("note", {"text": "b"}, timeout=OK) == {"got": "b"}
    with pytest.raises(ErrorReply) as refused:
        await conn.call("note", {"text": "c"}, timeout=OK)
    assert refused.value.code == "RATE_LIMIT_ERROR"


# -- size check and JSON parse come before the rate limit -------------------------------------


async def test_oversize_message_spends_no_rate_limit_token() -> None:
    app, seen = rate_limited_app(max_payload_size=64)
    async with TestClient(app).connect() as conn:
        for _ in range(3):
            await conn.send_raw(json.dumps({"event": "note", "payload": {"text": "x" * 100}}))
            await conn.receive_error("PAYLOAD_TOO_LARGE", timeout=OK)
        assert seen == []
        await assert_two_tokens_left(conn)


async def test_oversize_check_runs_before_json_parsing() -> None:
    app, _ = rate_limited_app(max_payload_size=16)
    async with TestClient(app).connect() as conn:
        await conn.send_raw("{this is not json and it is long}")
        error = await conn.receive_error(timeout=OK)
        assert error["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[1, 2, 3]",
        '{"payload": {}}',
        '{"event": "note", "payload": [1]}',
        '{"event": "note", "payload": {}, "ack": 1.5}',
    ],
    ids=["bad-json", "not-an-object", "no-event", "payload-not-object", "bad-ack"],
)
async def test_undecodable_message_spends_no_rate_limit_token(raw: str) -> None:
    app, seen = rate_limited_app()
    async with TestClient(app).connect() as conn:
        for _ in range(3):
            await conn.send_raw(raw)
            await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        assert seen == []
        await assert_two_tokens_left(conn)


# -- the rate limit comes before session touch, middleware, lookup and validation -------------


async def test_unknown_and_invalid_events_spend_tokens() -> None:
    """The rate limit runs before lookup and validation: refused events still cost a token."""
    app, _ = rate_limited_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("no_such_event", {})
        await conn.receive_error("UNKNOWN_EVENT", timeout=OK)
        await conn.emit("note", {"text": 42})
        await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        with pytest.raises(ErrorReply) as refused:
            await conn.call("note", {"text": "late"}, timeout=OK)
        assert refused.value.code == "RATE_LIMIT_ERROR"


async def test_rate_limited_message_reaches_neither_touch_nor_middleware() -> None:
    app, seen = rate_limited_app()
    async with TestClient(app).connect() as conn:
        await conn.call("note", {"text": "1"}, timeout=OK)
        await conn.call("note", {"text": "2"}, timeout=OK)
        assert seen == ["note", "note"]
        conn.connection.last_active = LONG_AGO
        await conn.emit("note", {"text": "3"})
        await conn.receive_error("RATE_LIMIT_ERROR", timeout=OK)
        await conn.wait_idle()
        assert seen == ["note", "note"]
        assert conn.connection.last_active == LONG_AGO


# -- session touch: __pong__ is consumed there --------------------------------------------------


async def test_pong_is_consumed_by_the_session() -> None:
    app = SocketApp()
    seen: list[str] = []

    @app.middleware
    async def record(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        seen.append(event)
        return await next_handler(conn, event, payload)

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    async with TestClient(app).connect() as conn:
        conn.connection.last_active = LONG_AGO
        await conn.send_raw('{"event": "__pong__", "payload": {"ts": 1}}')
        assert conn.connection.last_active > LONG_AGO
        await conn.emit("__pong__", {}, ack="p1")  # even with an ack: no reply of any kind
        with pytest.raises(TimeoutError):
            await conn.receive(timeout=QUIET)
        await conn.wait_idle()
        assert seen == []
        assert await conn.call("echo", {"after": "pong"}, timeout=OK) == {"after": "pong"}
        assert seen == ["echo"]


async def test_pong_spends_no_token_and_is_not_refused_at_the_limit() -> None:
    """docs/decisions.md: heartbeat replies are exempt from the rate limit."""
    app, seen = rate_limited_app()
    async with TestClient(app).connect() as conn:
        for _ in range(5):
            await conn.send_raw('{"event": "__pong__"}')
        await assert_two_tokens_left(conn)
        conn.connection.last_active = LONG_AGO
        await conn.send_raw('{"event": "__pong__"}')  # the bucket is empty now
        assert conn.connection.last_active > LONG_AGO
        with pytest.raises(TimeoutError):
            await conn.receive_error(timeout=QUIET)
        assert seen == ["note", "note"]
        assert not conn.closed


async def test_session_touch_happens_before_middleware() -> None:
    app = SocketApp()
    observed: list[datetime] = []

    @app.middleware
    async def record(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        observed.append(conn.last_active)
        return await next_handler(conn, event, payload)

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    async with TestClient(app).connect() as conn:
        conn.connection.last_active = LONG_AGO
        await conn.call("echo", {}, timeout=OK)
        assert len(observed) == 1
        assert observed[0] > LONG_AGO


# -- middleware, then lookup, then validation, then dependencies, then the handler -------------


async def test_middleware_runs_for_an_unknown_event_before_unknown_event_is_sent() -> None:
    app = SocketApp()
    seen: list[tuple[str, dict[str, Any]]] = []

    @app.middleware
    async def record(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        seen.append((event, payload))
        return await next_handler(conn, event, payload)

    @app.on("known")
    async def known(conn: Connection) -> None:
        return None

    async with TestClient(app).connect() as conn:
        await conn.emit("mystery", {"k": 1})
        error = await conn.receive_error("UNKNOWN_EVENT", timeout=OK)
        assert error["event"] == "mystery"
        assert seen == [("mystery", {"k": 1})]


async def test_middleware_can_swallow_an_unknown_event() -> None:
    """Lookup happens inside the chain: a middleware that stops the event prevents it."""
    app = SocketApp()

    @app.middleware
    async def swallow(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        if event.startswith("legacy_"):
            return None
        return await next_handler(conn, event, payload)

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    async with TestClient(app).connect() as conn:
        await conn.emit("legacy_hello", {})
        with pytest.raises(TimeoutError):
            await conn.receive(timeout=QUIET)
        await conn.emit("other_unknown", {})
        await conn.receive_error("UNKNOWN_EVENT", timeout=OK)


async def test_lookup_comes_before_validation() -> None:
    app = SocketApp()

    @app.on("note")
    async def note(conn: Connection, payload: Note) -> None:
        return None

    async with TestClient(app).connect() as conn:
        await conn.emit("unregistered", {"text": 123, "junk": [1]})
        error = await conn.receive_error(timeout=OK)
        assert error["code"] == "UNKNOWN_EVENT"


async def test_middleware_runs_before_validation_fails() -> None:
    app = SocketApp()
    seen: list[dict[str, Any]] = []
    handled: list[Note] = []

    @app.middleware
    async def record(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        seen.append(dict(payload))
        return await next_handler(conn, event, payload)

    @app.on("note")
    async def note(conn: Connection, payload: Note) -> None:
        handled.append(payload)

    async with TestClient(app).connect() as conn:
        await conn.emit("note", {"text": ["not", "a", "string"]})
        await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        assert seen == [{"text": ["not", "a", "string"]}]
        assert handled == []


async def test_middleware_can_repair_a_payload_before_validation() -> None:
    app = SocketApp()

    @app.middleware
    async def upgrade(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        if "body" in payload:  # an old client's field name
            payload = {"text": payload["body"]}
        return await next_handler(conn, event, payload)

    @app.on("note")
    async def note(conn: Connection, payload: Note) -> str:
        return payload.text

    async with TestClient(app).connect() as conn:
        assert await conn.call("note", {"body": "old style"}, timeout=OK) == "old style"


async def test_dependency_does_not_run_when_validation_fails() -> None:
    app = SocketApp()
    calls: list[str] = []

    def dependency(conn: Connection) -> str:
        calls.append("dependency")
        return "value"

    @app.on("note")
    async def note(conn: Connection, payload: Note, dep: str = Depends(dependency)) -> str:
        calls.append("handler")
        return dep

    async with TestClient(app).connect() as conn:
        await conn.emit("note", {})
        error = await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        assert error["event"] == "note"
        await conn.wait_idle()
        assert calls == []
        assert await conn.call("note", {"text": "ok"}, timeout=OK) == "value"
        assert calls == ["dependency", "handler"]


async def test_full_order_of_the_application_stages() -> None:
    """Middleware, then validation (the handler's model), then dependencies, then handler."""
    app = SocketApp()
    log = STAGES
    log.clear()

    @app.middleware
    async def outer(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        log.append("middleware")
        return await next_handler(conn, event, payload)

    async def dependency() -> int:
        log.append("dependency")
        return 10

    @app.on("traced")
    async def traced(conn: Connection, payload: Traced, extra: int = Depends(dependency)) -> int:
        log.append("handler")
        return payload.value + extra

    async with TestClient(app).connect() as conn:
        assert await conn.call("traced", {"value": 5}, timeout=OK) == 15
        assert log == ["middleware", "validation", "dependency", "handler"]
