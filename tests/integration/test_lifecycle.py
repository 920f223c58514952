"""Lifecycle hooks and the connect greeting, driven end to end through the TestClient."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import Connection, SocketApp
from socketspec.errors import CloseCode
from socketspec.testing import ErrorReply, TestClient


class Target(BaseModel):
    room: str


def room_app() -> SocketApp:
    """An app whose clients enter and exit rooms by event, answering with their rooms."""
    app = SocketApp()

    @app.on("enter")
    async def enter(conn: Connection, payload: Target) -> dict[str, Any]:
        await app.rooms.join(conn, payload.room)
        return {"rooms": sorted(conn.rooms)}

    @app.on("exit")
    async def exit_room(conn: Connection, payload: Target) -> dict[str, Any]:
        await app.rooms.leave(conn, payload.room)
        return {"rooms": sorted(conn.rooms)}

    @app.on("echo")
    def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return {"echo": payload}

    return app


# -- the greeting --------------------------------------------------------------------------------


async def test_connect_greeting_carries_conn_id_and_comes_first() -> None:
    app = room_app()

    @app.on_connect
    async def welcome(conn: Connection) -> None:
        await conn.emit("welcome", {"id": conn.id})

    async with TestClient(app) as client:
        tc = await client.connect()
        greeting = await tc.receive("__connect__", timeout=1)
        assert greeting["conn_id"] == tc.id == tc.connection.id
        assert greeting["namespace"] == "/"
        assert (await tc.receive("welcome", timeout=1)) == {"id": tc.id}
        other = await client.connect()
        assert (await other.receive("__connect__", timeout=1))["conn_id"] == other.id
        assert other.id != tc.id


async def test_greeting_is_the_first_message_on_the_wire() -> None:
    app = room_app()

    @app.on_connect
    async def hello(conn: Connection) -> None:
        await conn.emit("hello", {})

    async with TestClient(app).connect() as tc:
        # on_connect ran during the connect; the greeting was queued before its message
        assert [m["event"] for m in tc.pending()] == ["__connect__", "hello"]


# -- order of hooks ------------------------------------------------------------------------------


async def test_scripted_life_runs_hooks_in_order() -> None:
    app = room_app()
    log: list[tuple[Any, ...]] = []

    @app.on_connect
    def connected(conn: Connection) -> None:  # sync hook
        log.append(("connect", conn.id))

    @app.on_room_join
    async def joined(conn: Connection, room: str) -> None:  # async hook
        log.append(("join", conn.id, room))

    @app.on_room_leave
    def left(conn: Connection, room: str) -> None:  # sync hook
        log.append(("leave", conn.id, room))

    @app.on_disconnect
    async def disconnected(conn: Connection, reason: str) -> None:  # async hook
        log.append(("disconnect", conn.id, reason, sorted(conn.rooms)))

    async with TestClient(app) as client:
        tc = await client.connect()
        cid = tc.id
        assert log == [("connect", cid)]
        assert await tc.call("enter", {"room": "alpha"}) == {"rooms": ["alpha"]}
        assert await tc.call("enter", {"room": "beta"}) == {"rooms": ["alpha", "beta"]}
        assert await tc.call("exit", {"room": "alpha"}) == {"rooms": ["beta"]}
        assert tc.connection.rooms == {"beta"}
        await tc.close()

    assert log == [
        ("connect", cid),
        ("join", cid, "alpha"),
        ("join", cid, "beta"),
        ("leave", cid, "alpha"),
        ("leave", cid, "beta"),
        ("disconnect", cid, "client_close", []),
    ]


async def test_sync_and_async_hooks_all_run_in_registration_order() -> None:
    app = room_app()
    log: list[str] = []
    boom = RuntimeError("kaboom")

    @app.on("explode")
    async def explode(conn: Connection) -> None:
        raise boom

    for name in ("on_connect", "on_disconnect", "on_error", "on_room_join", "on_room_leave"):

        def sync_hook(*args: Any, _name: str = name) -> None:
            log.append(f"{_name}:sync")

        async def async_hook(*args: Any, _name: str = name) -> None:
            log.append(f"{_name}:async")

        getattr(app, name)(sync_hook)
        getattr(app, name)(async_hook)

    async with TestClient(app) as client:
        tc = await client.connect()
        await tc.call("enter", {"room": "r"})
        with pytest.raises(ErrorReply):
            await tc.call("explode")
        await tc.wait_idle()
        await tc.call("exit", {"room": "r"})
        await tc.close()

    assert log == [
        "on_connect:sync",
        "on_connect:async",
        "on_room_join:sync",
        "on_room_join:async",
        "on_error:sync",
        "on_error:async",
        "on_room_leave:sync",
        "on_room_leave:async",
        "on_disconnect:sync",
        "on_disconnect:async",
    ]


async def test_leave_hooks_run_for_every_room_when_a_connection_goes_away() -> None:
    app = room_app()
    left: list[tuple[str, str]] = []
    order: list[str] = []

    @app.on_room_leave
    async def on_leave(conn: Connection, room: str) -> None:
        left.append((conn.id, room))
        order.append("leave")

    @app.on_disconnect
    def on_gone(conn: Connection, reason: str) -> None:
        order.append("disconnect")

    async with TestClient(app) as client:
        tc = await client.connect()
        stay = await client.connect()
        for room in ("one", "two", "three"):
            await tc.call("enter", {"room": room})
            await stay.call("enter", {"room": room})
        server_conn = tc.connection
        await tc.close()
        assert sorted(left) == sorted((server_conn.id, r) for r in ("one", "two", "three"))
        assert order == ["leave", "leave", "leave", "disconnect"]
        assert server_conn.rooms == set()
        for room in ("one", "two", "three"):
            assert [m.id for m in await app.rooms.members(room)] == [stay.id]


async def test_server_side_disconnect_runs_hooks_with_its_reason() -> None:
    app = room_app()
    seen: list[tuple[str, str]] = []
    left: list[str] = []

    @app.on("kick_me")
    async def kick_me(conn: Connection) -> None:
        await conn.disconnect("kicked")

    @app.on_room_leave
    def on_leave(conn: Connection, room: str) -> None:
        left.append(room)

    @app.on_disconnect
    def on_gone(conn: Connection, reason: str) -> None:
        seen.append((conn.id, reason))

    async with TestClient(app) as client:
        tc = await client.connect()
        await tc.call("enter", {"room": "x"})
        await tc.emit("kick_me")
        assert await tc.wait_closed(timeout=1) == CloseCode.NORMAL
        assert seen == [(tc.id, "kicked")]
        assert left == ["x"]


# -- errors and failing hooks ----------------------------------------------------------------


async def test_on_error_receives_the_exact_exception_the_handler_raised() -> None:
    app = room_app()
    raised: list[BaseException] = []
    got_sync: list[tuple[str, BaseException]] = []
    got_async: list[tuple[str, BaseException]] = []

    @app.on("fail")
    async def fail(conn: Connection, payload: dict[str, Any]) -> None:
        exc = LookupError(f"secret detail {payload['n']}")
        raised.append(exc)
        raise exc

    @app.on_error
    def sync_error(conn: Connection, exc: Exception) -> None:
        got_sync.append((conn.id, exc))

    @app.on_error
    async def async_error(conn: Connection, exc: Exception) -> None:
        got_async.append((conn.id, exc))

    async with TestClient(app).connect() as tc:
        with pytest.raises(ErrorReply) as info:
            await tc.call("fail", {"n": 1})
        assert info.value.code == "HANDLER_ERROR"
        assert "secret detail" not in str(info.value.payload)
        assert info.value.payload["request_id"]
        with pytest.raises(ErrorReply):
            await tc.call("fail", {"n": 2})
        await tc.wait_idle()  # on_error hooks run after the error envelope is sent
        assert len(raised) == 2
        assert [e for _, e in got_sync] == raised
        assert all(a is b for (_, a), b in zip(got_sync, raised, strict=True))
        assert all(a is b for (_, a), b in zip(got_async, raised, strict=True))
        assert {cid for cid, _ in got_sync + got_async} == {tc.id}
        # a handler's exception never closes the connection
        assert not tc.closed
        assert await tc.call("echo", {"still": "here"}) == {"echo": {"still": "here"}}


async def test_raising_hooks_do_not_break_the_connection() -> None:
    app = room_app()
    ran: list[str] = []

    @app.on("fail")
    def fail(conn: Connection) -> None:
        raise ValueError("handler failure")

    def make_raiser(name: str) -> Any:
        def raiser(*args: Any) -> None:
            ran.append(f"{name}:raised")
            raise RuntimeError(f"{name} hook is broken")

        return raiser

    def make_async_raiser(name: str) -> Any:
        async def raiser(*args: Any) -> None:
            ran.append(f"{name}:raised-async")
            raise RuntimeError(f"{name} hook is broken")

        return raiser

    def make_recorder(name: str) -> Any:
        async def recorder(*args: Any) -> None:
            ran.append(f"{name}:ok")

        return recorder

    for name in ("on_connect", "on_disconnect", "on_error", "on_room_join", "on_room_leave"):
        getattr(app, name)(make_raiser(name))
        getattr(app, name)(make_async_raiser(name))
        getattr(app, name)(make_recorder(name))

    async with TestClient(app) as client:
        tc = await client.connect()
        assert not tc.closed
        assert (await tc.receive("__connect__", timeout=1))["conn_id"] == tc.id
        assert await tc.call("enter", {"room": "r1"}) == {"rooms": ["r1"]}
        assert await tc.call("enter", {"room": "r2"}) == {"rooms": ["r1", "r2"]}
        with pytest.raises(ErrorReply) as info:
            await tc.call("fail")
        assert info.value.code == "HANDLER_ERROR"
        await tc.wait_idle()
        assert await tc.call("exit", {"room": "r1"}) == {"rooms": ["r2"]}
        assert await tc.call("echo", {"a": 1}) == {"echo": {"a": 1}}
        assert not tc.closed
        server_conn = tc.connection
        await tc.close()
        assert server_conn.rooms == set()
        assert await app.rooms.members("r2") == []

    for name, times in (
        ("on_connect", 1),
        ("on_room_join", 2),
        ("on_error", 1),
        ("on_room_leave", 2),  # r1 by event, r2 on disconnect
        ("on_disconnect", 1),
    ):
        assert ran.count(f"{name}:raised") == times, name
        assert ran.count(f"{name}:raised-async") == times, name
        assert ran.count(f"{name}:ok") == times, name


async def test_on_room_join_hook_sees_the_updated_rooms() -> None:
    app = room_app()
    snapshots: list[set[str]] = []

    @app.on_room_join
    def on_join(conn: Connection, room: str) -> None:
        snapshots.append(set(conn.rooms))

    async with TestClient(app).connect() as tc:
        await tc.call("enter", {"room": "a"})
        await tc.call("enter", {"room": "b"})
        assert snapshots == [{"a"}, {"a", "b"}]
