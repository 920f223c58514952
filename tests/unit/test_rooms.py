"""Room patterns, guards, room configuration and broadcasting through RoomManager."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from socketspec import envelope
from socketspec.backends.memory import MemoryRoomStore
from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.errors import (
    ConfigurationError,
    ErrorCode,
    RoomFullError,
    RoomNotFoundError,
    RoomPermissionError,
)
from socketspec.hooks import Hooks
from socketspec.rooms import Room, RoomManager, RoomPattern


def make_conn(conn_id: str, *, role: str | None = None, namespace: str = "/") -> Connection:
    now = datetime.now(UTC)
    return Connection(
        id=conn_id,
        raw_socket=None,
        identity=Identity(user_id=f"user-{conn_id}", role=role),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
        namespace=namespace,
    )


class Member:
    """The smallest LocalMember: records every frame it is given."""

    def __init__(self, conn: Connection, *, alive: bool = True) -> None:
        self.conn = conn
        self.alive = alive
        self.frames: list[bytes] = []

    @property
    def id(self) -> str:
        return self.conn.id

    def deliver(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return self.alive

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(f) for f in self.frames]


class BrokenMember(Member):
    def deliver(self, frame: bytes) -> bool:
        raise ConnectionResetError("socket gone")


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class World:
    """A RoomManager over a MemoryRoomStore, with hooks that record what they saw."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryRoomStore(clock=self.clock)
        self.hooks = Hooks()
        self.rooms = RoomManager(self.store, self.hooks)
        self.joined: list[tuple[str, str]] = []
        self.left: list[tuple[str, str]] = []
        self.hooks.add("on_room_join", lambda c, r: self.joined.append((c.id, r)))
        self.hooks.add("on_room_leave", lambda c, r: self.left.append((c.id, r)))

    async def member(self, conn_id: str, **kw: Any) -> Member:
        m = Member(make_conn(conn_id, **kw))
        await self.store.attach(m)
        return m

    async def add(self, member: Member) -> Member:
        await self.store.attach(member)
        return member


@pytest.fixture
def world() -> World:
    return World()


# -- RoomPattern --------------------------------------------------------------------------------


def test_pattern_one_variable() -> None:
    p = RoomPattern("admin:{section}")
    assert p.is_template
    assert p.variables == ["section"]
    assert p.match("admin:billing") == {"section": "billing"}


def test_pattern_several_variables() -> None:
    p = RoomPattern("org:{org}/team:{team}")
    assert p.variables == ["org", "team"]
    assert p.match("org:acme/team:red") == {"org": "acme", "team": "red"}


@pytest.mark.parametrize("name", ["admin:", "admin", "xadmin:a", "Admin:a", "other:a", ""])
def test_pattern_no_match(name: str) -> None:
    assert RoomPattern("admin:{section}").match(name) is None


def test_pattern_variable_may_contain_colons() -> None:
    assert RoomPattern("admin:{section}").match("admin:eu:billing") == {"section": "eu:billing"}


def test_pattern_literal_parts_are_not_regex() -> None:
    p = RoomPattern("a.b+{x}")
    assert p.match("a.b+1") == {"x": "1"}
    assert p.match("aXbb1") is None


def test_static_pattern() -> None:
    p = RoomPattern("lobby")
    assert not p.is_template
    assert p.match("lobby") == {}
    assert p.match("lobby2") is None


def test_pattern_repeated_variable_refused() -> None:
    with pytest.raises(ConfigurationError):
        RoomPattern("{a}:{a}")


# -- guards -------------------------------------------------------------------------------------


async def test_guard_receives_pattern_variables(world: World) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    def guard(conn: Connection, **kwargs: Any) -> bool:
        calls.append((conn.id, kwargs))
        return True

    world.rooms.add_guard("org:{org}:team:{team}", guard)
    m = await world.member("a")
    await world.rooms.join(m.conn, "org:acme:team:red")
    assert calls == [("a", {"org": "acme", "team": "red"})]
    assert "org:acme:team:red" in m.conn.rooms


async def test_guard_gets_room_name_when_it_asks(world: World) -> None:
    seen: list[tuple[str, str]] = []

    async def guard(conn: Connection, section: str, room: str) -> bool:
        seen.append((section, room))
        return True

    world.rooms.add_guard("admin:{section}", guard)
    m = await world.member("a")
    await world.rooms.join(m.conn, "admin:ops")
    assert seen == [("ops", "admin:ops")]


@pytest.mark.parametrize("is_async", [False, True])
async def test_guard_sync_and_async_decide(world: World, is_async: bool) -> None:
    def sync_guard(conn: Connection, section: str) -> bool:
        return conn.identity.role == "admin"

    async def async_guard(conn: Connection, section: str) -> bool:
        return conn.identity.role == "admin"

    world.rooms.add_guard("admin:{section}", async_guard if is_async else sync_guard)
    boss = await world.member("boss", role="admin")
    guest = await world.member("guest", role="viewer")

    await world.rooms.join(boss.conn, "admin:ops")
    with pytest.raises(RoomPermissionError) as info:
        await world.rooms.join(guest.conn, "admin:ops")
    assert info.value.code is ErrorCode.PERMISSION_ERROR
    assert "admin:ops" not in guest.conn.rooms
    assert [c.id for c in await world.rooms.members("admin:ops")] == ["boss"]
    assert world.joined == [("boss", "admin:ops")]


async def test_guard_not_matching_does_not_run(world: World) -> None:
    world.rooms.add_guard("admin:{section}", lambda conn, section: False)
    m = await world.member("a")
    await world.rooms.join(m.conn, "chat:general")
    assert "chat:general" in m.conn.rooms


async def test_every_matching_guard_must_admit(world: World) -> None:
    world.rooms.add_guard("chat:{room}", lambda conn, room: True)
    world.rooms.add_guard("chat:{name}", lambda conn, name: name != "secret")
    m = await world.member("a")
    await world.rooms.join(m.conn, "chat:open")
    with pytest.raises(RoomPermissionError):
        await world.rooms.join(m.conn, "chat:secret")


async def test_private_room_without_guard_refused(world: World) -> None:
    world.rooms.add_room(Room("vip:{id}", private=True))
    m = await world.member("a")
    with pytest.raises(RoomPermissionError):
        await world.rooms.join(m.conn, "vip:1")
    assert m.conn.rooms == set()
    assert not await world.rooms.exists("vip:1")


async def test_private_room_with_admitting_guard(world: World) -> None:
    world.rooms.add_room(Room("vip:{id}", private=True))
    world.rooms.add_guard("vip:{id}", lambda conn, id: id == "1")
    m = await world.member("a")
    await world.rooms.join(m.conn, "vip:1")
    assert "vip:1" in m.conn.rooms
    with pytest.raises(RoomPermissionError):
        await world.rooms.join(m.conn, "vip:2")


# -- room configuration -------------------------------------------------------------------------


async def test_max_members(world: World) -> None:
    world.rooms.add_room(Room("duel:{id}", max_members=2))
    a, b, c = [await world.member(x) for x in "abc"]
    await world.rooms.join(a.conn, "duel:1")
    await world.rooms.join(b.conn, "duel:1")
    with pytest.raises(RoomFullError) as info:
        await world.rooms.join(c.conn, "duel:1")
    assert isinstance(info.value, RoomPermissionError)
    assert info.value.details["max_members"] == 2
    assert "duel:1" not in c.conn.rooms
    assert world.joined == [("a", "duel:1"), ("b", "duel:1")]
    # another room of the same template has its own count
    await world.rooms.join(c.conn, "duel:2")
    # a place frees up after a leave
    await world.rooms.leave(a.conn, "duel:1")
    await world.rooms.join(c.conn, "duel:1")
    assert [m.id for m in await world.rooms.members("duel:1")] == ["b", "c"]


async def test_max_members_on_static_room(world: World) -> None:
    world.rooms.add_room(Room("solo", max_members=1))
    a, b = await world.member("a"), await world.member("b")
    await world.rooms.join(a.conn, "solo")
    with pytest.raises(RoomFullError):
        await world.rooms.join(b.conn, "solo")


async def test_static_room_always_exists(world: World) -> None:
    world.rooms.add_room(Room("lobby"))
    assert await world.rooms.exists("lobby")
    assert await world.rooms.members("lobby") == []
    m = await world.member("a")
    await world.rooms.join(m.conn, "lobby")
    await world.rooms.leave(m.conn, "lobby")
    assert await world.rooms.exists("lobby")
    assert world.rooms.config_for("lobby").name == "lobby"


async def test_dynamic_room_lives_while_it_has_members(world: World) -> None:
    m = await world.member("a")
    assert not await world.rooms.exists("chat:x")
    await world.rooms.join(m.conn, "chat:x")
    assert await world.rooms.exists("chat:x")
    await world.rooms.leave(m.conn, "chat:x")
    assert not await world.rooms.exists("chat:x")


async def test_ttl_keeps_empty_room_until_it_passes(world: World) -> None:
    world.rooms.add_room(Room("game:{id}", ttl=30))
    m = await world.member("a")
    await world.rooms.join(m.conn, "game:7")
    world.clock.now = 2000.0
    await world.rooms.leave(m.conn, "game:7")
    assert await world.rooms.members("game:7") == []
    world.clock.now = 2029.9
    assert await world.rooms.exists("game:7")
    # a strict broadcast to it is still fine inside the ttl
    assert await world.rooms.broadcast("game:7", "tick", {}, strict=True) == 0
    world.clock.now = 2030.0
    assert not await world.rooms.exists("game:7")
    with pytest.raises(RoomNotFoundError):
        await world.rooms.broadcast("game:7", "tick", {}, strict=True)


async def test_rooms_without_ttl_vanish_at_once(world: World) -> None:
    world.rooms.add_room(Room("game:{id}", ttl=30))
    m = await world.member("a")
    await world.rooms.join(m.conn, "chat:1")  # not a game room: no ttl
    await world.rooms.leave(m.conn, "chat:1")
    assert not await world.rooms.exists("chat:1")


# -- join / leave -------------------------------------------------------------------------------


async def test_join_runs_hook_once_and_is_idempotent(world: World) -> None:
    m = await world.member("a")
    await world.rooms.join(m.conn, "r")
    await world.rooms.join(m.conn, "r")
    assert world.joined == [("a", "r")]
    assert m.conn.rooms == {"r"}


async def test_join_own_id_room_is_a_no_op(world: World) -> None:
    m = await world.member("a")
    await world.rooms.join(m.conn, "a")
    assert m.conn.rooms == set()
    assert world.joined == []


async def test_leave_runs_hook(world: World) -> None:
    m = await world.member("a")
    await world.rooms.join(m.conn, "r")
    await world.rooms.leave(m.conn, "r")
    await world.rooms.leave(m.conn, "r")  # second leave: nothing
    await world.rooms.leave(m.conn, "never-joined")
    assert world.left == [("a", "r")]
    assert m.conn.rooms == set()
    assert await world.rooms.members("r") == []


async def test_members_in_join_order(world: World) -> None:
    c, a, b = await world.member("c"), await world.member("a"), await world.member("b")
    for m in (c, a, b):
        await world.rooms.join(m.conn, "room")
    members = await world.rooms.members("room")
    assert [x.id for x in members] == ["c", "a", "b"]
    assert all(isinstance(x, Connection) for x in members)
    assert members[0] is c.conn


async def test_leave_all_clears_rooms_and_runs_leave_hooks(world: World) -> None:
    m = await world.member("a")
    other = await world.member("b")
    for room in ("r1", "r2", "r3"):
        await world.rooms.join(m.conn, room)
    await world.rooms.join(other.conn, "r2")
    await world.rooms.leave_all(m.conn)
    assert m.conn.rooms == set()
    assert sorted(world.left) == [("a", "r1"), ("a", "r2"), ("a", "r3")]
    assert not await world.rooms.exists("r1")
    assert [x.id for x in await world.rooms.members("r2")] == ["b"]
    # no longer routable
    assert not await world.rooms.emit_to("a", "hi", {})


# -- delivery -----------------------------------------------------------------------------------


async def test_broadcast_encodes_once_and_delivers_to_all(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [await world.member(x) for x in ("a", "b", "c", "d")]
    for m in members:
        await world.rooms.join(m.conn, "chat:1")
    outsider = await world.member("z")

    calls: list[str] = []
    real_encode = envelope.encode

    def counting_encode(event: str, payload: Any, ack: Any = None) -> bytes:
        calls.append(event)
        return real_encode(event, payload, ack)

    monkeypatch.setattr("socketspec.rooms.envelope.encode", counting_encode)
    sent = await world.rooms.broadcast("chat:1", "new_message", {"text": "hi"})
    assert sent == 4
    assert calls == ["new_message"]
    frames = [m.frames for m in members]
    assert all(len(f) == 1 for f in frames)
    assert all(f[0] == frames[0][0] for f in frames)
    assert orjson.loads(frames[0][0]) == {"event": "new_message", "payload": {"text": "hi"}}
    assert outsider.frames == []


async def test_broadcast_exclude_by_id_and_connection(world: World) -> None:
    a, b, c = [await world.member(x) for x in "abc"]
    for m in (a, b, c):
        await world.rooms.join(m.conn, "r")
    assert await world.rooms.broadcast("r", "e", {}, exclude=["a"]) == 2
    assert await world.rooms.broadcast("r", "e", {}, exclude=[b.conn, "c"]) == 1
    assert (len(a.frames), len(b.frames), len(c.frames)) == (1, 1, 1)


async def test_broadcast_missing_room(world: World) -> None:
    assert await world.rooms.broadcast("ghost", "e", {}) == 0
    with pytest.raises(RoomNotFoundError) as info:
        await world.rooms.broadcast("ghost", "e", {}, strict=True)
    assert info.value.code is ErrorCode.ROOM_NOT_FOUND


async def test_broadcast_continues_past_a_failing_member(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a = await world.member("a")
    broken = await world.add(BrokenMember(make_conn("broken")))
    c = await world.member("c")
    for m in (a, broken, c):
        await world.rooms.join(m.conn, "r")
    with caplog.at_level(logging.ERROR):
        sent = await world.rooms.broadcast("r", "e", {"n": 1})
    assert sent == 2
    assert len(a.frames) == 1 and len(c.frames) == 1
    assert any("broken" in r.getMessage() for r in caplog.records)


async def test_broadcast_counts_only_accepted_deliveries(world: World) -> None:
    a = await world.member("a")
    gone = await world.add(Member(make_conn("gone"), alive=False))
    for m in (a, gone):
        await world.rooms.join(m.conn, "r")
    assert await world.rooms.broadcast("r", "e", {}) == 1


async def test_broadcast_model_payload(world: World) -> None:
    from pydantic import BaseModel

    class Note(BaseModel):
        text: str

    a = await world.member("a")
    await world.rooms.join(a.conn, "r")
    await world.rooms.broadcast("r", "note", Note(text="x"))
    assert a.events() == [{"event": "note", "payload": {"text": "x"}}]


async def test_broadcast_all(world: World) -> None:
    a = await world.member("a")
    b = await world.member("b", namespace="/admin")
    assert await world.rooms.broadcast_all("hello", {"v": 1}) == 2
    assert a.events() == b.events() == [{"event": "hello", "payload": {"v": 1}}]
    assert await world.rooms.broadcast_all("hello", {}, namespace="/admin") == 1
    assert len(a.frames) == 1 and len(b.frames) == 2


@pytest.mark.parametrize("form", ["id", "connection", "list"])
async def test_broadcast_except(world: World, form: str) -> None:
    a, b, c = [await world.member(x) for x in "abc"]
    exclude: Any = {"id": "a", "connection": a.conn, "list": ["a", c.conn]}[form]
    sent = await world.rooms.broadcast_except(exclude, "notice", {})
    assert a.frames == []
    assert len(b.frames) == 1
    if form == "list":
        assert sent == 1 and c.frames == []
    else:
        assert sent == 2 and len(c.frames) == 1


async def test_emit_to_connection_id(world: World) -> None:
    a, b = await world.member("a"), await world.member("b")
    assert await world.rooms.emit_to("b", "dm", {"from": "a"})
    assert b.events() == [{"event": "dm", "payload": {"from": "a"}}]
    assert a.frames == []
    assert not await world.rooms.emit_to("nobody", "dm", {})


async def test_own_id_room_members_and_broadcast(world: World) -> None:
    a = await world.member("a")
    assert await world.rooms.exists("a")
    assert await world.rooms.members("a") == [a.conn]
    assert await world.rooms.broadcast("a", "e", {}, strict=True) == 1
