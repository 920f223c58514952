"""What a handler receives (payload inference) and what it can do with its ``Connection``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, Identity, SessionInfo, SocketApp
from socketspec.errors import ConfigurationError
from socketspec.testing import TestClient

OK = 2.0
QUIET = 0.15
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


class Move(BaseModel):
    x: int
    y: int


class Preferences(BaseModel):
    theme: str = "dark"
    volume: int = 5


class Position(BaseModel):
    x: int
    y: int
    label: str = "origin"


async def until(condition: Callable[[], bool], timeout: float = OK) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


# -- payload inference --------------------------------------------------------------------------


def inference_app() -> tuple[SocketApp, list[tuple[str, Any]]]:
    app = SocketApp()
    seen: list[tuple[str, Any]] = []

    @app.on("model")
    async def model(conn: Connection, payload: Move) -> None:
        seen.append(("model", payload))

    @app.on("defaults")
    async def defaults(conn: Connection, payload: Preferences) -> None:
        seen.append(("defaults", payload))

    @app.on("as_dict")
    async def as_dict(conn: Connection, payload: dict) -> None:  # type: ignore[type-arg]
        seen.append(("as_dict", payload))

    @app.on("as_typed_dict")
    async def as_typed_dict(conn: Connection, payload: dict[str, Any]) -> None:
        seen.append(("as_typed_dict", payload))

    @app.on("unannotated")
    async def unannotated(conn, payload) -> None:  # type: ignore[no-untyped-def]
        seen.append(("unannotated", payload))

    @app.on("conn_only")
    async def conn_only(conn: Connection) -> None:
        seen.append(("conn_only", conn.id))

    return app, seen


async def test_model_annotation_gives_a_validated_instance() -> None:
    app, seen = inference_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("model", {"x": "3", "y": 4})
        await conn.wait_idle()
        assert len(seen) == 1
        name, payload = seen[0]
        assert name == "model"
        assert type(payload) is Move
        assert payload == Move(x=3, y=4)


@pytest.mark.parametrize("event", ["as_dict", "as_typed_dict", "unannotated"])
async def test_dict_or_no_annotation_gives_the_raw_dict(event: str) -> None:
    app, seen = inference_app()
    raw = {"x": "3", "nested": {"list": [1, 2]}, "extra": None}
    async with TestClient(app).connect() as conn:
        await conn.emit(event, raw)
        await conn.wait_idle()
        assert seen == [(event, raw)]
        assert type(seen[0][1]) is dict
        assert seen[0][1]["x"] == "3"  # nothing coerced


async def test_handler_taking_only_the_connection_ignores_the_payload() -> None:
    app, seen = inference_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("conn_only", {"anything": ["goes", 1]})
        await conn.send_raw('{"event": "conn_only"}')
        await conn.wait_idle()
        assert seen == [("conn_only", conn.id), ("conn_only", conn.id)]
        with pytest.raises(TimeoutError):
            await conn.receive_error(timeout=QUIET)


@pytest.mark.parametrize(
    "raw_template",
    ['{"event": "%s"}', '{"event": "%s", "payload": null}'],
    ids=["missing", "null"],
)
async def test_missing_payload_means_an_empty_object(raw_template: str) -> None:
    app, seen = inference_app()
    async with TestClient(app).connect() as conn:
        for event in ("as_dict", "unannotated", "defaults"):
            await conn.send_raw(raw_template % event)
        await conn.wait_idle()
        assert sorted(seen, key=lambda item: item[0]) == [
            ("as_dict", {}),
            ("defaults", Preferences()),
            ("unannotated", {}),
        ]
        await conn.send_raw(raw_template % "model")  # {} lacks the required fields
        error = await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        assert error["event"] == "model"


async def test_sync_handler_gets_the_same_inference() -> None:
    app = SocketApp()

    @app.on("add")
    def add(conn: Connection, payload: Move) -> int:
        return payload.x + payload.y

    async with TestClient(app).connect() as conn:
        assert await conn.call("add", {"x": 2, "y": "3"}, timeout=OK) == 5


async def test_unresolvable_payload_annotation_is_resolved_or_refused_before_serving() -> None:
    """This module uses string annotations: a model local to a function cannot be resolved
    from the module. Either it is resolved, or the app refuses it before the first
    connection; it must never become an error on every event."""

    class LocalMove(BaseModel):
        x: int

    app = SocketApp()
    seen: list[Any] = []
    try:

        @app.on("local")
        async def local(conn: Connection, payload: LocalMove) -> None:
            seen.append(payload)

        app.startup()
    except ConfigurationError as refused:
        assert "local" in str(refused)
        return
    async with TestClient(app).connect() as conn:
        await conn.emit("local", {"x": "1"})
        await conn.wait_idle()
        with pytest.raises(TimeoutError):
            await conn.receive_error(timeout=QUIET)
        assert seen == [LocalMove(x=1)]


# -- the Connection API inside handlers ---------------------------------------------------------


async def test_conn_emit_sends_dicts_and_models() -> None:
    app = SocketApp()

    @app.on("where")
    async def where(conn: Connection, payload: dict[str, Any]) -> None:
        await conn.emit("as_dict", {"x": payload["x"], "tags": ["a"]})
        await conn.emit("as_model", Position(x=payload["x"], y=2))

    async with TestClient(app).connect() as conn:
        await conn.emit("where", {"x": 9})
        first = await conn.receive(timeout=OK)
        second = await conn.receive(timeout=OK)
        assert first == {"event": "as_dict", "payload": {"x": 9, "tags": ["a"]}}
        assert second == {"event": "as_model", "payload": {"x": 9, "y": 2, "label": "origin"}}


async def test_last_active_is_updated_by_every_inbound_message() -> None:
    app = SocketApp()

    @app.on("move")
    async def move(conn: Connection, payload: Move) -> None:
        return None

    messages = [
        '{"event": "move", "payload": {"x": 1, "y": 2}}',
        '{"event": "__pong__", "payload": {}}',
        '{"event": "__pong__"}',
        '{"event": "move", "payload": {"x": "left"}}',
        '{"event": "not_registered", "payload": {}}',
    ]
    async with TestClient(app).connect() as conn:
        server_side = conn.connection
        assert server_side.last_active >= server_side.connected_at
        for raw in messages:
            server_side.last_active = LONG_AGO
            before = datetime.now(UTC)
            await conn.send_raw(raw)
            await conn.wait_idle()
            assert server_side.last_active >= before, raw
        await conn.receive_error("VALIDATION_ERROR", timeout=OK)
        await conn.receive_error("UNKNOWN_EVENT", timeout=OK)


def hand_built_connection() -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id="manual",
        raw_socket=None,
        identity=Identity(),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
    )


async def test_a_connection_built_by_hand_cannot_emit_or_disconnect() -> None:
    conn = hand_built_connection()
    with pytest.raises(RuntimeError):
        await conn.emit("hello", {})
    with pytest.raises(RuntimeError):
        await conn.disconnect("bye")


async def test_disconnect_from_a_handler_closes_normally_with_its_reason() -> None:
    app = SocketApp()
    disconnects: list[tuple[str, str]] = []
    after: list[str] = []

    @app.on_disconnect
    async def record(conn: Connection, reason: str) -> None:
        disconnects.append((conn.id, reason))

    @app.on("misbehave")
    async def misbehave(conn: Connection) -> None:
        await conn.emit("warning", {"text": "you are banned"})
        await conn.disconnect("banned")
        after.append("returned")

    @app.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    async with TestClient(app) as client:
        bystander = await client.connect()
        conn = await client.connect()
        await conn.emit("misbehave", {})
        assert await conn.wait_closed(timeout=OK) == 1000
        assert conn.closed
        assert conn.close_code == 1000
        assert await conn.receive("warning", timeout=OK) == {"text": "you are banned"}
        await until(lambda: bool(disconnects) and bool(after))
        assert disconnects == [(conn.id, "banned")]
        assert app.runtime(conn.id) is None
        assert after == ["returned"]  # the handler itself is not cancelled by its own close
        assert await bystander.call("echo", {"ok": 1}, timeout=OK) == {"ok": 1}
        assert disconnects == [(conn.id, "banned")]
