"""Middleware: FIFO chain, stopping, rewriting, results as acks, errors, registration time."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, SocketApp
from socketspec.errors import ConfigurationError, RoomPermissionError
from socketspec.testing import TestClient

OK = 2.0
QUIET = 0.15


class Greeting(BaseModel):
    name: str


def tracing_middleware(label: str, log: list[str]) -> Any:
    async def middleware(
        conn: Connection, event: str, payload: dict[str, Any], next_handler: Any
    ) -> Any:
        log.append(f"{label}>")
        result = await next_handler(conn, event, payload)
        log.append(f"<{label}")
        return result

    return middleware


async def test_middlewares_run_first_registered_outermost() -> None:
    app = SocketApp()
    log: list[str] = []
    for label in ("a", "b", "c"):
        app.middleware(tracing_middleware(label, log))

    @app.on("hello")
    async def hello(conn: Connection, payload: Greeting) -> str:
        log.append("handler")
        return f"hi {payload.name}"

    async with TestClient(app).connect() as conn:
        assert await conn.call("hello", {"name": "ann"}, timeout=OK) == "hi ann"
        assert log == ["a>", "b>", "c>", "handler", "<c", "<b", "<a"]
        log.clear()
        assert await conn.call("hello", {"name": "bo"}, timeout=OK) == "hi bo"
        assert log == ["a>", "b>", "c>", "handler", "<c", "<b", "<a"]


async def test_middleware_that_does_not_call_next_stops_the_event() -> None:
    app = SocketApp()
    log: list[str] = []
    app.middleware(tracing_middleware("outer", log))

    @app.middleware
    async def gatekeeper(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        if payload.get("blocked"):
            log.append("stopped")
            return None
        return await next_handler(conn, event, payload)

    app.middleware(tracing_middleware("inner", log))

    @app.on("hello")
    async def hello(conn: Connection, payload: Greeting) -> str:
        log.append("handler")
        return "reached"

    async with TestClient(app).connect() as conn:
        await conn.emit("hello", {"name": "x", "blocked": True}, ack="s1")
        await conn.wait_idle()
        assert log == ["outer>", "stopped", "<outer"]
        with pytest.raises(TimeoutError):  # neither an ack nor an error
            await conn.receive(timeout=QUIET)
        assert await conn.call("hello", {"name": "x"}, timeout=OK) == "reached"


async def test_middleware_can_rewrite_the_payload() -> None:
    app = SocketApp()

    @app.middleware
    async def normalise(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        rewritten = {**payload, "name": str(payload.get("name", "")).strip().title()}
        return await next_handler(conn, event, rewritten)

    seen: list[Greeting] = []

    @app.on("hello")
    async def hello(conn: Connection, payload: Greeting) -> str:
        seen.append(payload)
        return payload.name

    async with TestClient(app).connect() as conn:
        assert await conn.call("hello", {"name": "  grace hopper "}, timeout=OK) == "Grace Hopper"
        assert seen == [Greeting(name="Grace Hopper")]


async def test_chain_result_is_the_ack_payload() -> None:
    app = SocketApp()

    @app.middleware
    async def envelope(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        result = await next_handler(conn, event, payload)
        return {"event": event, "result": result}

    @app.middleware
    async def answer_directly(
        conn: Connection, event: str, payload: dict[str, Any], next_handler: Any
    ):
        if event == "cached":
            return "from cache"  # no handler is registered for "cached"
        return await next_handler(conn, event, payload)

    @app.on("hello")
    async def hello(conn: Connection, payload: Greeting) -> str:
        return f"hi {payload.name}"

    async with TestClient(app).connect() as conn:
        assert await conn.call("hello", {"name": "kim"}, timeout=OK) == {
            "event": "hello",
            "result": "hi kim",
        }
        assert await conn.call("cached", {}, timeout=OK) == {
            "event": "cached",
            "result": "from cache",
        }


async def test_middleware_raising_room_permission_error_is_a_permission_error() -> None:
    app = SocketApp()
    handled: list[str] = []

    @app.middleware
    async def admins_only(conn: Connection, event: str, payload: dict[str, Any], next_handler: Any):
        if event.startswith("admin_") and conn.query_params.get("role") != "admin":
            raise RoomPermissionError(f"{event} needs the admin role", details={"event": event})
        return await next_handler(conn, event, payload)

    @app.on("admin_purge")
    async def admin_purge(conn: Connection) -> str:
        handled.append(conn.query_params.get("role", ""))
        return "purged"

    async with TestClient(app) as client:
        user = await client.connect(query_params={"role": "user"})
        await user.emit("admin_purge", {}, ack=1)
        message = await user.receive_message("__error__", timeout=OK)
        assert message["ack"] == 1
        assert message["payload"]["code"] == "PERMISSION_ERROR"
        assert message["payload"]["event"] == "admin_purge"
        assert message["payload"]["message"] == "admin_purge needs the admin role"
        assert message["payload"]["details"] == {"event": "admin_purge"}
        assert handled == []

        admin = await client.connect(query_params={"role": "admin"})
        assert await admin.call("admin_purge", {}, timeout=OK) == "purged"
        assert handled == ["admin"]
        assert not user.closed


async def noop_middleware(
    conn: Connection, event: str, payload: dict[str, Any], next_handler: Any
) -> Any:
    return await next_handler(conn, event, payload)


async def test_middleware_registration_after_startup_raises() -> None:
    app = SocketApp()

    @app.on("hello")
    async def hello(conn: Connection) -> None:
        return None

    app.middleware(noop_middleware)  # fine before startup
    async with TestClient(app) as client:
        with pytest.raises(ConfigurationError):
            app.middleware(noop_middleware)
        conn = await client.connect()
        with pytest.raises(ConfigurationError):
            app.middleware(noop_middleware)
        await conn.close()


async def test_middleware_registration_after_first_connect_raises() -> None:
    app = SocketApp()

    @app.on("hello")
    async def hello(conn: Connection) -> None:
        return None

    async with TestClient(app).connect():
        with pytest.raises(ConfigurationError):
            app.middleware(noop_middleware)
        with pytest.raises(ConfigurationError):
            app.on("late")(hello)
