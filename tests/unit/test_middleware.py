"""The middleware chain: FIFO order, short-circuit, results and rewrites."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.middleware import NextHandler, compile_chain


def make_conn() -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id="m-1",
        raw_socket=None,
        identity=Identity(),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
    )


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def endpoint(self, conn: Connection, event: str, payload: dict[str, Any]) -> Any:
        self.log.append("endpoint")
        self.calls.append((event, payload))
        return {"handled": event}


def tracing(name: str, rec: Recorder) -> Any:
    async def mw(conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler) -> Any:
        rec.log.append(f"{name} in")
        result = await nxt(conn, event, payload)
        rec.log.append(f"{name} out")
        return result

    return mw


async def test_no_middleware_is_the_endpoint() -> None:
    rec = Recorder()
    chain = compile_chain([], rec.endpoint)
    assert await chain(make_conn(), "e", {"a": 1}) == {"handled": "e"}
    assert rec.calls == [("e", {"a": 1})]


async def test_first_registered_is_outermost() -> None:
    rec = Recorder()
    chain = compile_chain([tracing("a", rec), tracing("b", rec), tracing("c", rec)], rec.endpoint)
    await chain(make_conn(), "e", {})
    assert rec.log == ["a in", "b in", "c in", "endpoint", "c out", "b out", "a out"]


async def test_middleware_not_calling_next_stops_the_event() -> None:
    rec = Recorder()

    async def gate(conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler) -> Any:
        rec.log.append("gate")
        return "blocked"

    chain = compile_chain([tracing("a", rec), gate, tracing("z", rec)], rec.endpoint)
    assert await chain(make_conn(), "e", {}) == "blocked"
    assert rec.log == ["a in", "gate", "a out"]
    assert rec.calls == []


async def test_return_value_propagates_and_can_be_changed() -> None:
    rec = Recorder()

    async def wrap(conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler) -> Any:
        inner = await nxt(conn, event, payload)
        return {"wrapped": inner}

    chain = compile_chain([tracing("a", rec), wrap], rec.endpoint)
    assert await chain(make_conn(), "go", {}) == {"wrapped": {"handled": "go"}}


async def test_payload_and_event_changes_reach_the_endpoint() -> None:
    rec = Recorder()

    async def stamp(conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler) -> Any:
        return await nxt(conn, event, {**payload, "stamped_by": conn.id})

    async def rename(
        conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler
    ) -> Any:
        return await nxt(conn, f"v2.{event}", payload)

    chain = compile_chain([stamp, rename], rec.endpoint)
    result = await chain(make_conn(), "save", {"x": 1})
    assert rec.calls == [("v2.save", {"x": 1, "stamped_by": "m-1"})]
    assert result == {"handled": "v2.save"}


async def test_sync_middleware_returning_awaitable_is_awaited() -> None:
    rec = Recorder()

    def passthrough(conn: Connection, event: str, payload: dict[str, Any], nxt: NextHandler) -> Any:
        return nxt(conn, event, payload)  # an awaitable, not awaited here

    chain = compile_chain([passthrough], rec.endpoint)
    assert await chain(make_conn(), "e", {}) == {"handled": "e"}


async def test_exception_propagates_through_the_chain() -> None:
    rec = Recorder()

    async def failing(conn: Connection, event: str, payload: dict[str, Any]) -> Any:
        raise LookupError("nope")

    chain = compile_chain([tracing("a", rec)], failing)
    try:
        await chain(make_conn(), "e", {})
    except LookupError:
        pass
    else:
        raise AssertionError("the endpoint's exception was swallowed")
    assert rec.log == ["a in"]


async def test_chain_can_be_called_repeatedly() -> None:
    rec = Recorder()
    chain = compile_chain([tracing("a", rec)], rec.endpoint)
    await chain(make_conn(), "one", {})
    await chain(make_conn(), "two", {})
    assert [event for event, _ in rec.calls] == ["one", "two"]


# -- call_next(): both forms of the reference ---------------------------------------------------


async def test_call_next_without_arguments_passes_the_event_on_unchanged() -> None:
    rec = Recorder()

    async def bare(conn: Connection, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        rec.log.append("bare")
        return await call_next()

    chain = compile_chain([bare, tracing("inner", rec)], rec.endpoint)
    assert await chain(make_conn(), "plain", {"n": 1}) == {"handled": "plain"}
    assert rec.log == ["bare", "inner in", "endpoint", "inner out"]
    assert rec.calls == [("plain", {"n": 1})]


async def test_both_forms_mix_and_a_rewrite_reaches_the_zero_argument_layer_below() -> None:
    rec = Recorder()

    async def rewrite(conn: Connection, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        return await call_next(conn, event + ".v2", {**payload, "seen": True})

    async def bare(conn: Connection, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        rec.log.append(f"bare sees {event}")
        return await call_next()

    chain = compile_chain([rewrite, bare], rec.endpoint)
    assert await chain(make_conn(), "order", {"id": 3}) == {"handled": "order.v2"}
    assert rec.log == ["bare sees order.v2", "endpoint"]
    assert rec.calls == [("order.v2", {"id": 3, "seen": True})]


async def test_a_sync_middleware_and_a_callable_object_work() -> None:
    rec = Recorder()

    def sync_gate(conn: Connection, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        rec.log.append("sync")
        return call_next()

    class Counting:
        def __init__(self) -> None:
            self.seen = 0

        async def __call__(
            self, conn: Connection, event: str, payload: dict[str, Any], call_next: Any
        ) -> Any:
            self.seen += 1
            return await call_next(conn, event, payload)

    counting = Counting()
    chain = compile_chain([sync_gate, counting], rec.endpoint)
    assert await chain(make_conn(), "e", {}) == {"handled": "e"}
    assert rec.log == ["sync", "endpoint"]
    assert counting.seen == 1


async def test_call_next_with_the_wrong_number_of_arguments_says_which_forms_exist() -> None:
    rec = Recorder()

    async def wrong(conn: Connection, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        return await call_next(conn, event)

    chain = compile_chain([wrong], rec.endpoint)
    with pytest.raises(TypeError, match=r"no arguments or \(conn, event, payload\)"):
        await chain(make_conn(), "e", {})
    assert rec.calls == []


def test_no_middleware_compiles_to_the_endpoint_itself() -> None:
    rec = Recorder()
    assert compile_chain([], rec.endpoint) == rec.endpoint
