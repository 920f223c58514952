"""Rooms through the TestClient: membership, guards, limits, static rooms and broadcasts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import socketspec.rooms
from socketspec import Connection, RoomPermissionError, SocketApp
from socketspec.rooms import Room
from socketspec.testing import ErrorReply, TestClient, TestConnection


class Target(BaseModel):
    room: str


class Shout(BaseModel):
    room: str
    text: str
    skip_self: bool = False
    skip_ids: list[str] = []


class Direct(BaseModel):
    to: str
    text: str


class Text(BaseModel):
    text: str


def make_app(rooms: list[Room] | None = None) -> SocketApp:
    """Clients drive every room operation by event; each handler answers with a result."""
    app = SocketApp(rooms=rooms)

    @app.on("enter")
    async def enter(conn: Connection, payload: Target) -> dict[str, Any]:
        await app.rooms.join(conn, payload.room)
        return {"rooms": sorted(conn.rooms)}

    @app.on("exit")
    async def exit_room(conn: Connection, payload: Target) -> dict[str, Any]:
        await app.rooms.leave(conn, payload.room)
        return {"rooms": sorted(conn.rooms)}

    @app.on("shout")
    async def shout(conn: Connection, payload: Shout) -> dict[str, int]:
        exclude: list[str | Connection] = list(payload.skip_ids)
        if payload.skip_self:
            exclude.append(conn)
        sent = await app.rooms.broadcast(
            payload.room, "news", {"text": payload.text, "from": conn.id}, exclude=exclude
        )
        return {"delivered": sent}

    @app.on("shout_all")
    async def shout_all(conn: Connection, payload: Text) -> dict[str, int]:
        return {"delivered": await app.rooms.broadcast_all("everyone", {"text": payload.text})}

    @app.on("shout_others")
    async def shout_others(conn: Connection, payload: Text) -> dict[str, int]:
        sent = await app.rooms.broadcast_except(conn, "others", {"text": payload.text})
        return {"delivered": sent}

    @app.on("whisper")
    async def whisper(conn: Connection, payload: Direct) -> dict[str, bool]:
        return {"sent": await app.rooms.emit_to(payload.to, "whispered", {"text": payload.text})}

    @app.on("to_id_room")
    async def to_id_room(conn: Connection, payload: Direct) -> dict[str, int]:
        sent = await app.rooms.broadcast(payload.to, "addressed", {"text": payload.text})
        return {"delivered": sent}

    @app.on("who")
    async def who(conn: Connection, payload: Target) -> dict[str, Any]:
        members = await app.rooms.members(payload.room)
        return {"ids": [m.id for m in members]}

    @app.on("exists")
    async def exists(conn: Connection, payload: Target) -> dict[str, bool]:
        return {"exists": await app.rooms.exists(payload.room)}

    return app


async def messages_before_flush(tc: TestConnection) -> list[dict[str, Any]]:
    """Everything (housekeeping aside) that reached ``tc`` before a marker sent now."""
    await tc.connection.emit("flush", {})
    got: list[dict[str, Any]] = []
    while (message := await tc.receive(timeout=1))["event"] != "flush":
        got.append(message)
    return got


async def exists(tc: TestConnection, room: str) -> bool:
    return bool((await tc.call("exists", {"room": room}))["exists"])


async def refused(tc: TestConnection, room: str) -> dict[str, Any]:
    with pytest.raises(ErrorReply) as info:
        await tc.call("enter", {"room": room})
    assert info.value.code == "PERMISSION_ERROR"
    return info.value.payload


# -- membership ----------------------------------------------------------------------------------


async def test_join_and_leave_in_handlers_update_conn_rooms() -> None:
    app = make_app()
    async with TestClient(app).connect() as tc:
        assert tc.connection.rooms == set()
        assert await tc.call("enter", {"room": "r1"}) == {"rooms": ["r1"]}
        assert await tc.call("enter", {"room": "r2"}) == {"rooms": ["r1", "r2"]}
        assert tc.connection.rooms == {"r1", "r2"}
        # joining twice is harmless
        assert await tc.call("enter", {"room": "r1"}) == {"rooms": ["r1", "r2"]}
        assert await tc.call("who", {"room": "r1"}) == {"ids": [tc.id]}
        assert await tc.call("exit", {"room": "r1"}) == {"rooms": ["r2"]}
        assert tc.connection.rooms == {"r2"}
        assert await tc.call("who", {"room": "r1"}) == {"ids": []}
        # leaving a room one is not in is harmless
        assert await tc.call("exit", {"room": "nowhere"}) == {"rooms": ["r2"]}


async def test_members_lists_the_connection_objects_in_join_order() -> None:
    app = make_app()
    async with TestClient(app) as client:
        a, b, c = [await client.connect() for _ in range(3)]
        for tc in (b, a, c):
            await tc.call("enter", {"room": "hall"})
        members = await app.rooms.members("hall")
        assert all(isinstance(m, Connection) for m in members)
        assert [m.id for m in members] == [b.id, a.id, c.id]
        assert members[0] is b.connection
        assert members[1] is a.connection
        assert members[2] is c.connection
        assert await a.call("who", {"room": "hall"}) == {"ids": [b.id, a.id, c.id]}


async def test_disconnect_removes_a_connection_from_all_its_rooms() -> None:
    app = make_app()
    async with TestClient(app) as client:
        a = await client.connect()
        b = await client.connect()
        for room in ("r1", "r2", "r3"):
            await a.call("enter", {"room": room})
        await b.call("enter", {"room": "r1"})
        server_a = a.connection
        await a.close()
        assert server_a.rooms == set()
        assert await b.call("who", {"room": "r1"}) == {"ids": [b.id]}
        assert await b.call("who", {"room": "r2"}) == {"ids": []}
        assert not await exists(b, "r2")
        assert not await exists(b, "r3")
        assert await b.call("shout", {"room": "r1", "text": "x"}) == {"delivered": 1}
        assert await b.call("shout", {"room": "r2", "text": "x"}) == {"delivered": 0}


# -- guards ----------------------------------------------------------------------------------


async def test_guard_gets_pattern_variables_as_keyword_arguments() -> None:
    app = make_app()
    calls: list[tuple[str, dict[str, str]]] = []

    @app.room_guard("admin:{section}")
    def admin_guard(conn: Connection, *, section: str) -> bool:  # sync guard
        calls.append((conn.id, {"section": section}))
        return conn.query_params.get("role") == "admin"

    @app.room_guard("org:{org}:team:{team}")
    async def team_guard(conn: Connection, *, org: str, team: str) -> bool:  # async guard
        calls.append((conn.id, {"org": org, "team": team}))
        return conn.query_params.get("org") == org

    async with TestClient(app) as client:
        admin = await client.connect(query_params={"role": "admin", "org": "acme"})
        user = await client.connect(query_params={"role": "user", "org": "other"})

        assert await admin.call("enter", {"room": "admin:billing"}) == {"rooms": ["admin:billing"]}
        assert calls == [(admin.id, {"section": "billing"})]

        payload = await refused(user, "admin:billing")
        assert payload["details"]["room"] == "admin:billing"
        assert payload["event"] == "enter"
        assert user.connection.rooms == set()
        assert calls[-1] == (user.id, {"section": "billing"})

        room = "org:acme:team:red"
        assert await admin.call("enter", {"room": room}) == {"rooms": ["admin:billing", room]}
        assert calls[-1] == (admin.id, {"org": "acme", "team": "red"})
        await refused(user, room)
        assert calls[-1] == (user.id, {"org": "acme", "team": "red"})

        # a room matching no pattern is not guarded
        before = len(calls)
        assert await user.call("enter", {"room": "lobby"}) == {"rooms": ["lobby"]}
        assert len(calls) == before
        assert [m.id for m in await app.rooms.members(room)] == [admin.id]


async def test_guard_refusal_runs_no_join_hook_and_creates_no_room() -> None:
    app = make_app()
    joins: list[str] = []

    @app.room_guard("locked:{name}")
    async def never(conn: Connection, *, name: str) -> bool:
        return False

    @app.on_room_join
    def on_join(conn: Connection, room: str) -> None:
        joins.append(room)

    async with TestClient(app).connect() as tc:
        payload = await refused(tc, "locked:door")
        assert set(payload) >= {"code", "event", "message", "request_id", "details"}
        assert joins == []
        assert tc.connection.rooms == set()
        assert not await exists(tc, "locked:door")
        assert not tc.closed
        assert await tc.call("enter", {"room": "open"}) == {"rooms": ["open"]}
        assert joins == ["open"]


async def test_every_guard_matching_a_room_must_admit() -> None:
    app = make_app()

    @app.room_guard("admin:{section}")
    def admins(conn: Connection, *, section: str) -> bool:
        return conn.query_params.get("role") == "admin"

    @app.room_guard("{area}:frozen")
    async def nothing_frozen(conn: Connection, *, area: str) -> bool:
        return False

    async with TestClient(app) as client:
        admin = await client.connect(query_params={"role": "admin"})
        assert await admin.call("enter", {"room": "admin:ops"}) == {"rooms": ["admin:ops"]}
        await refused(admin, "admin:frozen")  # admitted by one guard, refused by the other
        await refused(admin, "lab:frozen")
        assert admin.connection.rooms == {"admin:ops"}


async def test_client_side_join_room_runs_guards_too() -> None:
    app = make_app()

    @app.room_guard("staff:{team}")
    def staff(conn: Connection, *, team: str) -> bool:
        return team == "ops"

    async with TestClient(app).connect() as tc:
        await tc.join_room("staff:ops")
        assert tc.connection.rooms == {"staff:ops"}
        with pytest.raises(RoomPermissionError):
            await tc.join_room("staff:sales")
        await tc.leave_room("staff:ops")
        assert tc.connection.rooms == set()


# -- limits and room kinds -----------------------------------------------------------------


async def test_max_members_is_enforced() -> None:
    app = make_app(rooms=[Room("stage", max_members=2)])
    async with TestClient(app) as client:
        a, b, c = [await client.connect() for _ in range(3)]
        await a.call("enter", {"room": "stage"})
        await b.call("enter", {"room": "stage"})
        payload = await refused(c, "stage")
        assert payload["details"]["room"] == "stage"
        assert "stage" in payload["message"]
        assert c.connection.rooms == set()
        assert [m.id for m in await app.rooms.members("stage")] == [a.id, b.id]
        # a place freed is a place taken
        await a.call("exit", {"room": "stage"})
        assert await c.call("enter", {"room": "stage"}) == {"rooms": ["stage"]}
        await refused(a, "stage")


async def test_max_members_holds_under_concurrent_joins() -> None:
    app = make_app(rooms=[Room("booth", max_members=2)])

    @app.room_guard("booth")
    async def slow_guard(conn: Connection) -> bool:
        await asyncio.sleep(0)  # every join is inside its guard at the same time
        return True

    async with TestClient(app) as client:
        conns = [await client.connect() for _ in range(6)]
        for tc in conns:  # all sent before any is answered
            await tc.emit("enter", {"room": "booth"})
        for tc in conns:
            await tc.wait_idle()
        assert len(await app.rooms.members("booth")) == 2
        inside = [tc for tc in conns if tc.connection.rooms == {"booth"}]
        assert len(inside) == 2
        for tc in conns:
            if tc not in inside:
                error = await tc.receive_error("PERMISSION_ERROR", timeout=1)
                assert error["details"]["room"] == "booth"


async def test_max_members_applies_to_every_room_of_a_template() -> None:
    app = make_app(rooms=[Room("chat:{id}", max_members=2)])
    async with TestClient(app) as client:
        a, b, c = [await client.connect() for _ in range(3)]
        await a.call("enter", {"room": "chat:7"})
        await b.call("enter", {"room": "chat:7"})
        payload = await refused(c, "chat:7")
        assert payload["details"]["room"] == "chat:7"
        # each room of the template has its own limit
        await c.call("enter", {"room": "chat:8"})
        await a.call("enter", {"room": "chat:8"})
        await refused(b, "chat:8")
        # rooms outside the template are unlimited
        for tc in (a, b, c):
            await tc.call("enter", {"room": "open:1"})
        assert len(await app.rooms.members("open:1")) == 3


async def test_static_rooms_always_exist_and_dynamic_rooms_vanish_when_empty() -> None:
    app = make_app(rooms=[Room("lobby")])
    assert await app.rooms.exists("lobby")  # before any connection
    async with TestClient(app) as client:
        a = await client.connect()
        b = await client.connect()
        assert await exists(a, "lobby")
        assert await a.call("who", {"room": "lobby"}) == {"ids": []}
        assert not await exists(a, "side")
        for tc in (a, b):
            await tc.call("enter", {"room": "lobby"})
            await tc.call("enter", {"room": "side"})
        assert await exists(a, "side")
        await a.call("exit", {"room": "lobby"})
        await a.call("exit", {"room": "side"})
        assert await exists(a, "side")  # b is still there
        await b.call("exit", {"room": "lobby"})
        await b.call("exit", {"room": "side"})
        assert await exists(a, "lobby")
        assert not await exists(a, "side")
        # a dynamic room also vanishes when its last member disconnects
        await b.call("enter", {"room": "side"})
        await b.close()
        assert not await exists(a, "side")
    assert await app.rooms.exists("lobby")


async def test_private_room_needs_a_guard_that_admits() -> None:
    app = make_app(rooms=[Room("vault", private=True), Room("vip:{tier}", private=True)])

    @app.room_guard("vip:{tier}")
    def vip(conn: Connection, *, tier: str) -> bool:
        return conn.query_params.get("tier") == tier

    async with TestClient(app) as client:
        gold = await client.connect(query_params={"tier": "gold"})
        await refused(gold, "vault")  # private, and no guard admits anyone
        assert await gold.call("enter", {"room": "vip:gold"}) == {"rooms": ["vip:gold"]}
        payload = await refused(gold, "vip:silver")
        assert payload["details"]["room"] == "vip:silver"
        assert gold.connection.rooms == {"vip:gold"}


# -- broadcasts ------------------------------------------------------------------------------


async def test_broadcast_reaches_every_member_once_and_no_one_else() -> None:
    app = make_app()
    async with TestClient(app) as client:
        a, b, c, outsider = [await client.connect() for _ in range(4)]
        for tc in (a, b, c):
            await tc.call("enter", {"room": "band"})
        await outsider.call("enter", {"room": "elsewhere"})

        assert await a.call("shout", {"room": "band", "text": "hi"}) == {"delivered": 3}
        for tc in (a, b, c):
            got = await messages_before_flush(tc)
            assert got == [{"event": "news", "payload": {"text": "hi", "from": a.id}}]
        assert await messages_before_flush(outsider) == []


async def test_broadcast_exclude_skips_connections_and_ids() -> None:
    app = make_app()
    async with TestClient(app) as client:
        a, b, c = [await client.connect() for _ in range(3)]
        for tc in (a, b, c):
            await tc.call("enter", {"room": "band"})
        assert await a.call("shout", {"room": "band", "text": "1", "skip_self": True}) == {
            "delivered": 2
        }
        assert await messages_before_flush(a) == []
        assert [m["payload"]["text"] for m in await messages_before_flush(b)] == ["1"]
        assert [m["payload"]["text"] for m in await messages_before_flush(c)] == ["1"]

        reply = await a.call("shout", {"room": "band", "text": "2", "skip_ids": [b.id, c.id]})
        assert reply == {"delivered": 1}
        assert [m["payload"]["text"] for m in await messages_before_flush(a)] == ["2"]
        assert await messages_before_flush(b) == []
        assert await messages_before_flush(c) == []


async def test_broadcast_serialises_the_envelope_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with TestClient(app) as client:
        members = [await client.connect() for _ in range(50)]
        for tc in members:
            await tc.join_room("big")

        real_encode = socketspec.rooms.envelope.encode
        encoded: list[str] = []

        def counting_encode(event: str, *args: Any, **kwargs: Any) -> bytes:
            encoded.append(event)
            return real_encode(event, *args, **kwargs)

        monkeypatch.setattr(socketspec.rooms.envelope, "encode", counting_encode)
        assert await members[0].call("shout", {"room": "big", "text": "all"}) == {"delivered": 50}
        assert encoded.count("news") == 1
        for tc in members:
            assert (await tc.receive("news", timeout=1))["text"] == "all"

        assert await members[1].call("shout_all", {"text": "x"}) == {"delivered": 50}
        assert encoded.count("everyone") == 1


async def test_a_dead_member_does_not_stop_a_broadcast(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with TestClient(app) as client:
        dead, b, c = [await client.connect() for _ in range(3)]
        for tc in (dead, b, c):  # the dead one first, so the others come after it
            await tc.call("enter", {"room": "band"})

        def broken_write(data: bytes) -> None:
            raise ConnectionResetError("peer vanished")

        monkeypatch.setattr(dead.connection.raw_socket, "write", broken_write)

        assert await c.call("shout", {"room": "band", "text": "still"}) == {"delivered": 2}
        assert [m["payload"]["text"] for m in await messages_before_flush(b)] == ["still"]
        assert (await c.receive("news", timeout=1))["text"] == "still"

        assert await c.call("shout_all", {"text": "all"}) == {"delivered": 2}
        assert (await b.receive("everyone", timeout=1)) == {"text": "all"}
        assert (await c.receive("everyone", timeout=1)) == {"text": "all"}

        assert await b.call("shout_others", {"text": "o"}) == {"delivered": 1}
        assert (await c.receive("others", timeout=1)) == {"text": "o"}


async def test_broadcast_all_reaches_everyone() -> None:
    app = make_app()
    async with TestClient(app) as client:
        conns = [await client.connect() for _ in range(4)]
        await conns[1].call("enter", {"room": "somewhere"})
        assert await conns[0].call("shout_all", {"text": "hey"}) == {"delivered": 4}
        for tc in conns:
            assert [m["event"] for m in await messages_before_flush(tc)] == ["everyone"]


async def test_broadcast_except_skips_the_given_connection() -> None:
    app = make_app()
    async with TestClient(app) as client:
        sender, x, y = [await client.connect() for _ in range(3)]
        assert await sender.call("shout_others", {"text": "psst"}) == {"delivered": 2}
        assert await messages_before_flush(sender) == []
        for tc in (x, y):
            got = await messages_before_flush(tc)
            assert got == [{"event": "others", "payload": {"text": "psst"}}]


async def test_each_connection_is_in_the_room_named_by_its_id() -> None:
    app = make_app()
    async with TestClient(app) as client:
        a, b, c = [await client.connect() for _ in range(3)]
        assert await a.call("to_id_room", {"to": b.id, "text": "for b"}) == {"delivered": 1}
        assert await messages_before_flush(b) == [
            {"event": "addressed", "payload": {"text": "for b"}}
        ]
        assert await messages_before_flush(a) == []
        assert await messages_before_flush(c) == []
        assert await exists(a, b.id)

        assert await a.call("whisper", {"to": c.id, "text": "for c"}) == {"sent": True}
        assert await messages_before_flush(c) == [
            {"event": "whispered", "payload": {"text": "for c"}}
        ]
        assert await messages_before_flush(a) == []
        assert await messages_before_flush(b) == []

        assert await a.call("whisper", {"to": "no-such-connection", "text": "?"}) == {"sent": False}
        await b.close()
        assert await a.call("to_id_room", {"to": b.id, "text": "gone"}) == {"delivered": 0}
        assert await a.call("whisper", {"to": b.id, "text": "gone"}) == {"sent": False}
        assert not await exists(a, b.id)
