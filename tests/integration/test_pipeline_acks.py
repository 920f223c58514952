"""Acks: ``{"event": "__ack__", "ack": <same>, "payload": <return value>}`` and acked errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, SocketApp
from socketspec.security.ratelimit import RateLimit
from socketspec.testing import ErrorReply, TestClient

OK = 2.0
QUIET = 0.15


class Receipt(BaseModel):
    order_id: int
    items: list[str]
    note: str | None = None


class Order(BaseModel):
    item: str


RETURN_VALUES: dict[str, Any] = {
    "dict": {"status": "queued", "position": 3},
    "list": [1, "two", {"three": 3}],
    "str": "accepted",
    "int": 17,
    "model": Receipt(order_id=7, items=["tea", "cake"]),
}
EXPECTED_WIRE: dict[str, Any] = {
    "dict": {"status": "queued", "position": 3},
    "list": [1, "two", {"three": 3}],
    "str": "accepted",
    "int": 17,
    "model": {"order_id": 7, "items": ["tea", "cake"], "note": None},
}


def ack_app(**options: Any) -> tuple[SocketApp, list[str]]:
    app = SocketApp(**options)
    ran: list[str] = []

    @app.on("give")
    async def give(conn: Connection, payload: dict[str, Any]) -> Any:
        ran.append(payload["kind"])
        return RETURN_VALUES[payload["kind"]]

    @app.on("nothing")
    async def nothing(conn: Connection, payload: dict[str, Any]) -> None:
        ran.append("nothing")

    @app.on("order")
    async def order(conn: Connection, payload: Order) -> str:
        return payload.item

    @app.on("crash")
    async def crash(conn: Connection) -> str:
        raise ZeroDivisionError("boom")

    return app, ran


@pytest.mark.parametrize("ack", ["req-1", 42, 0], ids=["str-ack", "int-ack", "zero-ack"])
@pytest.mark.parametrize("kind", list(RETURN_VALUES))
async def test_ack_carries_the_return_value(kind: str, ack: str | int) -> None:
    app, _ = ack_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("give", {"kind": kind}, ack=ack)
        message = await conn.receive_message("__ack__", timeout=OK)
        assert message == {"event": "__ack__", "ack": ack, "payload": EXPECTED_WIRE[kind]}
        assert type(message["ack"]) is type(ack)


async def test_each_ack_answers_its_own_message() -> None:
    app, _ = ack_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("give", {"kind": "str"}, ack="a")
        await conn.emit("give", {"kind": "int"}, ack="b")
        await conn.emit("give", {"kind": "list"}, ack=3)
        acks = [await conn.receive_message("__ack__", timeout=OK) for _ in range(3)]
        by_id = {message["ack"]: message["payload"] for message in acks}
        assert by_id == {"a": "accepted", "b": 17, 3: EXPECTED_WIRE["list"]}


async def test_handler_returning_none_sends_no_ack() -> None:
    app, ran = ack_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("nothing", {}, ack="n1")
        await conn.wait_idle()
        assert ran == ["nothing"]
        with pytest.raises(TimeoutError):
            await conn.receive(timeout=QUIET)


async def test_without_an_ack_field_no_ack_is_sent() -> None:
    app, ran = ack_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("give", {"kind": "dict"})
        await conn.wait_idle()
        assert ran == ["dict"]
        with pytest.raises(TimeoutError):
            await conn.receive(timeout=QUIET)


@pytest.mark.parametrize("ack", ["e-1", 5], ids=["str-ack", "int-ack"])
async def test_errors_carry_the_ack_of_the_message_that_caused_them(ack: str | int) -> None:
    app, _ = ack_app()
    cases = [
        ('{"event": "order", "payload": {}, "ack": %s}', "VALIDATION_ERROR", "order"),
        ('{"event": "order", "payload": [], "ack": %s}', "VALIDATION_ERROR", "order"),
        ('{"payload": {}, "ack": %s}', "VALIDATION_ERROR", None),
        ('{"event": "nope", "payload": {}, "ack": %s}', "UNKNOWN_EVENT", "nope"),
        ('{"event": "__ack__", "payload": {}, "ack": %s}', "UNKNOWN_EVENT", "__ack__"),
        ('{"event": "crash", "payload": {}, "ack": %s}', "HANDLER_ERROR", "crash"),
    ]
    literal = f'"{ack}"' if isinstance(ack, str) else str(ack)
    async with TestClient(app).connect() as conn:
        for template, code, event in cases:
            await conn.send_raw(template % literal)
            message = await conn.receive_message("__error__", timeout=OK)
            assert message["ack"] == ack
            assert type(message["ack"]) is type(ack)
            assert (message["payload"]["code"], message["payload"]["event"]) == (code, event)
            assert "__ack__" not in {m["event"] for m in conn.pending()}


@pytest.mark.parametrize("ack", ["r-1", 6], ids=["str-ack", "int-ack"])
async def test_rate_limit_error_carries_the_ack(ack: str | int) -> None:
    app, _ = ack_app(rate_limit=RateLimit(events=1, per_seconds=60))
    async with TestClient(app).connect() as conn:
        assert await conn.call("give", {"kind": "str"}, timeout=OK) == "accepted"
        await conn.emit("give", {"kind": "str"}, ack=ack)
        message = await conn.receive_message("__error__", timeout=OK)
        assert message["ack"] == ack
        assert message["payload"]["code"] == "RATE_LIMIT_ERROR"
        assert message["payload"]["event"] == "give"


async def test_call_returns_the_ack_payload_and_raises_error_reply() -> None:
    app, _ = ack_app()
    async with TestClient(app).connect() as conn:
        assert await conn.call("give", {"kind": "model"}, timeout=OK) == EXPECTED_WIRE["model"]
        assert await conn.call("order", Order(item="soup"), timeout=OK) == "soup"

        with pytest.raises(ErrorReply) as invalid:
            await conn.call("order", {"item": ["not", "a", "string"]}, timeout=OK)
        assert invalid.value.code == "VALIDATION_ERROR"
        assert invalid.value.payload["event"] == "order"
        assert invalid.value.payload["details"]["errors"]

        with pytest.raises(ErrorReply) as crashed:
            await conn.call("crash", {}, timeout=OK)
        assert crashed.value.code == "HANDLER_ERROR"
        assert "boom" not in crashed.value.payload["message"]

        with pytest.raises(ErrorReply) as unknown:
            await conn.call("missing", {}, timeout=OK)
        assert unknown.value.code == "UNKNOWN_EVENT"

        assert await conn.call("give", {"kind": "int"}, timeout=OK) == 17
