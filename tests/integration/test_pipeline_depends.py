"""``Depends``: chains, the connection, sync/async callables, yield cleanup, per-event caching."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, Depends, SocketApp
from socketspec.testing import TestClient

OK = 2.0


class Query(BaseModel):
    term: str


# -- chained, sync and async, connection-aware ---------------------------------------------------


def load_settings() -> dict[str, str]:
    return {"greeting": "hello"}


async def make_greeter(settings: dict[str, str] = Depends(load_settings)) -> str:  # noqa: B008
    return settings["greeting"].upper()


def conn_id_by_annotation(client: Connection) -> str:
    return f"annotated:{client.id}"


async def conn_id_by_name(conn) -> str:  # unannotated: recognised by its name
    return f"named:{conn.id}"


def search_term(payload: Query, event: str) -> str:
    return f"{event}:{payload.term}"


async def test_chained_sync_and_async_dependencies() -> None:
    app = SocketApp()

    @app.on("greet")
    async def greet(conn: Connection, payload: dict[str, Any], word: str = Depends(make_greeter)):
        return f"{word} {payload['name']}"

    async with TestClient(app).connect() as conn:
        assert await conn.call("greet", {"name": "ada"}, timeout=OK) == "HELLO ada"


async def test_connection_aware_dependencies() -> None:
    app = SocketApp()

    @app.on("whoami")
    async def whoami(
        conn: Connection,
        by_type: str = Depends(conn_id_by_annotation),
        by_name: str = Depends(conn_id_by_name),
    ) -> list[str]:
        return [by_type, by_name]

    async with TestClient(app) as client:
        first = await client.connect()
        second = await client.connect()
        assert await first.call("whoami", {}, timeout=OK) == [
            f"annotated:{first.id}",
            f"named:{first.id}",
        ]
        assert await second.call("whoami", {}, timeout=OK) == [
            f"annotated:{second.id}",
            f"named:{second.id}",
        ]


async def test_dependency_gets_the_validated_payload_and_the_event_name() -> None:
    app = SocketApp()

    @app.on("search")
    async def search(conn: Connection, payload: Query, key: str = Depends(search_term)) -> str:
        return key

    async with TestClient(app).connect() as conn:
        assert await conn.call("search", {"term": "owls"}, timeout=OK) == "search:owls"


# -- yield dependencies ---------------------------------------------------------------------------


def yield_app() -> tuple[SocketApp, list[str]]:
    app = SocketApp()
    log: list[str] = []

    def sync_resource() -> Iterator[str]:
        log.append("sync setup")
        try:
            yield "sync-res"
        except Exception as exc:
            log.append(f"sync saw {type(exc).__name__}")
            raise
        finally:
            log.append("sync cleanup")

    async def async_resource(base: str = Depends(sync_resource)) -> AsyncIterator[str]:
        log.append("async setup")
        try:
            yield f"{base}+async-res"
        except Exception as exc:
            log.append(f"async saw {type(exc).__name__}")
            raise
        finally:
            log.append("async cleanup")

    @app.on("use")
    async def use(
        conn: Connection, payload: dict[str, Any], res: str = Depends(async_resource)
    ) -> str:
        log.append(f"handler with {res}")
        if payload.get("fail"):
            raise LookupError("handler failed")
        return res

    return app, log


async def test_yield_dependencies_clean_up_after_the_handler() -> None:
    app, log = yield_app()
    async with TestClient(app).connect() as conn:
        assert await conn.call("use", {}, timeout=OK) == "sync-res+async-res"
        await conn.wait_idle()
        assert log == [
            "sync setup",
            "async setup",
            "handler with sync-res+async-res",
            "async cleanup",
            "sync cleanup",
        ]


async def test_yield_dependencies_clean_up_when_the_handler_raises() -> None:
    app, log = yield_app()
    async with TestClient(app).connect() as conn:
        await conn.emit("use", {"fail": True})
        error = await conn.receive_error("HANDLER_ERROR", timeout=OK)
        assert error["event"] == "use"
        await conn.wait_idle()
        assert log == [
            "sync setup",
            "async setup",
            "handler with sync-res+async-res",
            "async saw LookupError",
            "async cleanup",
            "sync saw LookupError",
            "sync cleanup",
        ]
        log.clear()
        assert await conn.call("use", {}, timeout=OK) == "sync-res+async-res"
        assert log[-2:] == ["async cleanup", "sync cleanup"]


# -- evaluated once per event -------------------------------------------------------------------


async def test_each_dependency_is_evaluated_once_per_event() -> None:
    app = SocketApp()
    calls: list[str] = []

    def counter() -> int:
        calls.append("counter")
        return len(calls)

    def tracked_session() -> Iterator[str]:
        calls.append("session open")
        yield "session"
        calls.append("session close")

    def left(n: int = Depends(counter), s: str = Depends(tracked_session)) -> int:
        return n

    async def right(n: int = Depends(counter), s: str = Depends(tracked_session)) -> int:
        return n

    @app.on("count")
    async def count(
        conn: Connection,
        a: int = Depends(left),
        b: int = Depends(right),
        c: int = Depends(counter),
        s: str = Depends(tracked_session),
    ) -> list[int]:
        return [a, b, c]

    async with TestClient(app).connect() as conn:
        first = await conn.call("count", {}, timeout=OK)
        assert len(set(first)) == 1
        assert calls.count("counter") == 1
        assert calls.count("session open") == calls.count("session close") == 1

        second = await conn.call("count", {}, timeout=OK)
        assert len(set(second)) == 1
        assert second != first
        assert calls.count("counter") == 2
        assert calls.count("session open") == calls.count("session close") == 2
