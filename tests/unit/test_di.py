"""Dependency injection: Depends, the per-event cache, generator cleanup.

No ``from __future__ import annotations`` here on purpose: these annotations are real
objects (test_registry.py covers the string form).
"""

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.di import (
    CallKind,
    Depends,
    ParamKind,
    SolveContext,
    build_dependant,
    call_kind,
    solve,
)
from socketspec.errors import ConfigurationError


class Order(BaseModel):
    item: str


def make_conn(conn_id: str = "c-1") -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id=conn_id,
        raw_socket=None,
        identity=Identity(user_id="u-1"),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
    )


async def resolve(
    call: Any, *, payload: Any = None, event: str = "evt", payload_type: Any = None
) -> Any:
    """Build and solve one dependency in a fresh exit stack."""
    dependant = build_dependant(call, payload_type=payload_type)
    async with AsyncExitStack() as stack:
        return await solve(dependant, SolveContext(make_conn(), event, payload, stack))


def test_depends_needs_a_callable() -> None:
    with pytest.raises(ConfigurationError):
        Depends(42)  # type: ignore[arg-type]


def test_depends_repr_and_flags() -> None:
    def token() -> str:
        return "t"

    d = Depends(token, use_cache=False)
    assert d.dependency is token
    assert d.use_cache is False
    assert "token" in repr(d)


# -- parameter classification -------------------------------------------------------------------


async def test_connection_by_annotation() -> None:
    def whose(c: Connection) -> str:
        return c.id

    assert build_dependant(whose).params[0].kind is ParamKind.CONNECTION
    assert await resolve(whose) == "c-1"


def id_from_conn(conn):  # type: ignore[no-untyped-def]
    return conn.id


def id_from_connection(connection):  # type: ignore[no-untyped-def]
    return connection.id


@pytest.mark.parametrize("call", [id_from_conn, id_from_connection])
async def test_connection_by_name(call: Any) -> None:
    assert build_dependant(call).params[0].kind is ParamKind.CONNECTION
    assert await resolve(call) == "c-1"


def test_name_conn_with_other_annotation_is_not_the_connection() -> None:
    def odd(conn: int) -> int:
        return conn

    with pytest.raises(ConfigurationError):
        build_dependant(odd)


async def test_connection_subclass_annotation() -> None:
    class MyConn(Connection):
        __hash__ = Connection.__hash__

    def whose(x: MyConn) -> str:
        return "ok"

    assert build_dependant(whose).params[0].kind is ParamKind.CONNECTION


async def test_payload_and_event_params() -> None:
    def describe(event, payload) -> tuple[str, Any]:  # type: ignore[no-untyped-def]
        return event, payload

    dependant = build_dependant(describe)
    assert [p.kind for p in dependant.params] == [ParamKind.EVENT, ParamKind.PAYLOAD]
    assert await resolve(describe, payload={"k": 1}, event="shout") == ("shout", {"k": 1})


async def test_payload_by_model_annotation() -> None:
    def item_of(order: Order) -> str:
        return order.item

    dependant = build_dependant(item_of, payload_type=Order)
    assert dependant.params[0].kind is ParamKind.PAYLOAD
    assert await resolve(item_of, payload=Order(item="tea"), payload_type=Order) == "tea"


def test_unresolvable_param_raises() -> None:
    def needs_limit(limit: int) -> int:
        return limit

    with pytest.raises(ConfigurationError, match="limit"):
        build_dependant(needs_limit)


def test_unresolvable_nested_param_raises() -> None:
    def inner(mystery: str) -> str:
        return mystery

    def outer(v: str = Depends(inner)) -> str:
        return v

    with pytest.raises(ConfigurationError, match="mystery"):
        build_dependant(outer)


async def test_defaults_and_var_params_are_skipped() -> None:
    def flexible(conn: Connection, size: int = 5, *args: Any, **kwargs: Any) -> int:
        return size

    assert [p.name for p in build_dependant(flexible).params] == ["conn"]
    assert await resolve(flexible) == 5


# -- chains and kinds ---------------------------------------------------------------------------


async def test_chained_dependencies() -> None:
    def user_id(conn: Connection) -> str:
        return conn.identity.user_id or ""

    def greeting(uid: str = Depends(user_id)) -> str:
        return f"hello {uid}"

    def shout(text: str = Depends(greeting), event=None) -> str:  # type: ignore[no-untyped-def]
        return text.upper() + "!"

    assert await resolve(shout) == "HELLO U-1!"


@pytest.mark.parametrize(
    ("factory", "kind"),
    [
        ("sync", CallKind.SYNC),
        ("async", CallKind.ASYNC),
        ("gen", CallKind.GENERATOR),
        ("agen", CallKind.ASYNC_GENERATOR),
    ],
)
async def test_every_call_kind_resolves(factory: str, kind: CallKind) -> None:
    def sync_dep() -> str:
        return "sync"

    async def async_dep() -> str:
        return "async"

    def gen_dep() -> Iterator[str]:
        yield "gen"

    async def agen_dep() -> AsyncIterator[str]:
        yield "agen"

    call = {"sync": sync_dep, "async": async_dep, "gen": gen_dep, "agen": agen_dep}[factory]
    assert call_kind(call) is kind
    assert await resolve(call) == factory


async def test_callable_instance_dependency() -> None:
    class Scale:
        async def __call__(self, payload: Any) -> int:
            return payload["n"] * 10

    scale = Scale()
    assert call_kind(scale) is CallKind.ASYNC
    assert await resolve(scale, payload={"n": 4}) == 40


async def test_class_dependency() -> None:
    class Pager:
        def __init__(self, conn: Connection, size: int = 10) -> None:
            self.owner = conn.id
            self.size = size

    pager = await resolve(Pager)
    assert isinstance(pager, Pager)
    assert (pager.owner, pager.size) == ("c-1", 10)


# -- caching ------------------------------------------------------------------------------------


async def test_cached_once_per_event() -> None:
    calls: list[int] = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    def left(v: int = Depends(counter)) -> int:
        return v

    def right(v: int = Depends(counter)) -> int:
        return v

    def both(a: int = Depends(left), b: int = Depends(right), c: int = Depends(counter)) -> Any:
        return (a, b, c)

    assert await resolve(both) == (1, 1, 1)
    assert len(calls) == 1
    # a new event (new context) calls it again
    assert await resolve(both) == (2, 2, 2)
    assert len(calls) == 2


async def test_use_cache_false_calls_again() -> None:
    calls: list[int] = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    def both(
        a: int = Depends(counter, use_cache=False), b: int = Depends(counter, use_cache=False)
    ) -> Any:
        return (a, b)

    assert await resolve(both) == (1, 2)
    assert len(calls) == 2


async def test_use_cache_false_ignores_a_cached_value() -> None:
    calls: list[int] = []

    def counter() -> int:
        calls.append(1)
        return len(calls)

    def both(
        a: int = Depends(counter), b: int = Depends(counter, use_cache=False)
    ) -> tuple[int, int]:
        return (a, b)

    assert await resolve(both) == (1, 2)


async def test_cache_is_per_context() -> None:
    calls: list[int] = []

    async def counter() -> int:
        calls.append(1)
        return len(calls)

    dependant = build_dependant(counter)
    async with AsyncExitStack() as stack:
        ctx = SolveContext(make_conn(), "e", {}, stack)
        assert await solve(dependant, ctx) == 1
        assert await solve(dependant, ctx) == 1
    assert len(calls) == 1


# -- generator cleanup --------------------------------------------------------------------------


async def test_generator_cleanup_runs_after_the_body() -> None:
    log: list[str] = []

    def sync_resource() -> Iterator[str]:
        log.append("sync open")
        yield "s"
        log.append("sync close")

    async def async_resource() -> AsyncIterator[str]:
        log.append("async open")
        yield "a"
        log.append("async close")

    def both(x: str = Depends(sync_resource), y: str = Depends(async_resource)) -> str:
        return x + y

    dependant = build_dependant(both)
    async with AsyncExitStack() as stack:
        value = await solve(dependant, SolveContext(make_conn(), "e", {}, stack))
        log.append(f"body {value}")
        assert "async close" not in log and "sync close" not in log
    # cleanup in reverse order of setup, after the body
    assert log == ["sync open", "async open", "body sa", "async close", "sync close"]


async def test_async_generator_cleanup_receives_the_exception() -> None:
    seen: list[BaseException] = []
    cleaned: list[bool] = []

    async def session() -> AsyncIterator[str]:
        try:
            yield "db"
        except Exception as exc:
            seen.append(exc)
            raise
        finally:
            cleaned.append(True)

    dependant = build_dependant(session)
    boom = ValueError("handler failed")
    with pytest.raises(ValueError, match="handler failed"):
        async with AsyncExitStack() as stack:
            assert await solve(dependant, SolveContext(make_conn(), "e", {}, stack)) == "db"
            raise boom
    assert seen == [boom]
    assert cleaned == [True]


async def test_sync_generator_cleanup_receives_the_exception() -> None:
    seen: list[BaseException] = []

    def resource() -> Iterator[str]:
        try:
            yield "r"
        except Exception as exc:
            seen.append(exc)
            raise

    dependant = build_dependant(resource)
    with pytest.raises(KeyError):
        async with AsyncExitStack() as stack:
            await solve(dependant, SolveContext(make_conn(), "e", {}, stack))
            raise KeyError("x")
    assert len(seen) == 1 and isinstance(seen[0], KeyError)


# -- cycles -------------------------------------------------------------------------------------


def test_self_cycle_detected() -> None:
    def loop(v: Any = None) -> Any:
        return v

    loop.__defaults__ = (Depends(loop),)
    with pytest.raises(ConfigurationError, match="cycle"):
        build_dependant(loop)


def test_two_step_cycle_detected() -> None:
    def first(v: Any = None) -> Any:
        return v

    def second(v: Any = Depends(first)) -> Any:  # noqa: B008
        return v

    first.__defaults__ = (Depends(second),)
    with pytest.raises(ConfigurationError, match="cycle"):
        build_dependant(second)


def test_shared_dependency_is_not_a_cycle() -> None:
    def base() -> int:
        return 1

    def a(v: int = Depends(base)) -> int:
        return v

    def top(x: int = Depends(a), y: int = Depends(base)) -> int:
        return x + y

    assert [p.name for p in build_dependant(top).params] == ["x", "y"]
