"""Reference patterns for rooms: static and lazy rooms, join/leave/broadcast/members,
guards with ``{var}`` patterns, and the room lifecycle hooks.

The app is a concert venue: stages are lazily created rooms (``stage:{stage_id}``),
``backstage:{area}`` is for crew only, and ``foyer`` is a static room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel

from socketspec import SocketApp
from socketspec.connection import Identity
from socketspec.rooms import Room
from socketspec.testing import TestClient

QUIET = 0.15


class BadgeAuth:
    """A custom auth backend: the badge headers say who you are; no badge is anonymous."""

    def authenticate(self, headers: Mapping[str, str], query_params: Mapping[str, str]) -> Identity:
        return Identity(user_id=headers.get("x-badge"), role=headers.get("x-badge-role"))


venue = SocketApp(docs=True, auth=BadgeAuth(), rooms=[Room(name="foyer")])

guard_calls: list[tuple[str, str, bool]] = []
room_events: list[tuple[str, str, str]] = []


class StagePass(BaseModel):
    stage_id: str


class Cheer(BaseModel):
    stage_id: str
    chant: str


class CrewPass(BaseModel):
    area: str


@venue.on("enter_stage", tags=["rooms"])
async def enter_stage(conn, payload: StagePass) -> None:
    stage = f"stage:{payload.stage_id}"
    await venue.rooms.join(conn, stage)
    await conn.emit("entered", {"room": stage})


@venue.on("exit_stage")
async def exit_stage(conn, payload: StagePass) -> None:
    stage = f"stage:{payload.stage_id}"
    await venue.rooms.leave(conn, stage)
    await conn.emit("exited", {"room": stage})


@venue.on("cheer")
async def cheer(conn, payload: Cheer) -> None:
    await venue.rooms.broadcast(
        f"stage:{payload.stage_id}",
        "crowd_cheer",
        {"from": conn.id, "chant": payload.chant},
    )


@venue.on("headcount")
async def headcount(conn, payload: StagePass) -> None:
    stage = f"stage:{payload.stage_id}"
    members = await venue.rooms.members(stage)
    await conn.emit("count", {"room": stage, "count": len(members)})


@venue.on("enter_backstage")
async def enter_backstage(conn, payload: CrewPass) -> None:
    area = f"backstage:{payload.area}"
    await venue.rooms.join(conn, area)
    await conn.emit("entered", {"room": area})


@venue.room_guard("stage:{stage_id}")
async def ticket_holders(conn, stage_id: str) -> bool:
    guard_calls.append(("stage", stage_id, f"stage:{stage_id}" in conn.rooms))
    return conn.identity.is_authenticated


@venue.room_guard("backstage:{area}")
async def crew_only(conn, area: str) -> bool:
    guard_calls.append(("backstage", area, f"backstage:{area}" in conn.rooms))
    return conn.identity.role == "crew"


@venue.on_room_join
async def on_enter(conn, room: str) -> None:
    room_events.append(("join", conn.id, room))


@venue.on_room_leave
async def on_exit(conn, room: str) -> None:
    room_events.append(("leave", conn.id, room))


def badge(name: str, role: str | None = None) -> dict[str, str]:
    headers = {"X-Badge": name}
    if role is not None:
        headers["X-Badge-Role"] = role
    return headers


@pytest.fixture(autouse=True)
def _reset_records() -> None:
    guard_calls.clear()
    room_events.clear()


async def test_static_room_always_exists_and_others_are_lazy() -> None:
    async with TestClient(venue) as client:
        assert await venue.rooms.exists("foyer")
        assert not await venue.rooms.exists("stage:main")
        fan = await client.connect(headers=badge("fan-1"))
        await fan.send("enter_stage", {"stage_id": "main"})
        await fan.receive("entered")
        assert await venue.rooms.exists("stage:main")
        await fan.send("exit_stage", {"stage_id": "main"})
        await fan.receive("exited")
        assert not await venue.rooms.exists("stage:main")
        assert await venue.rooms.exists("foyer")


async def test_join_and_leave_update_conn_rooms_and_confirm() -> None:
    async with TestClient(venue) as client:
        fan = await client.connect(headers=badge("fan-1"))
        await fan.send("enter_stage", {"stage_id": "north"})
        assert await fan.receive() == {"event": "entered", "payload": {"room": "stage:north"}}
        assert fan.connection.rooms == {"stage:north"}
        await fan.send("exit_stage", {"stage_id": "north"})
        assert await fan.receive() == {"event": "exited", "payload": {"room": "stage:north"}}
        assert fan.connection.rooms == set()


async def test_disconnect_removes_the_connection_from_all_its_rooms() -> None:
    async with TestClient(venue) as client:
        stays = await client.connect(headers=badge("fan-1"))
        goes = await client.connect(headers=badge("fan-2"))
        for fan in (stays, goes):
            await fan.send("enter_stage", {"stage_id": "east"})
            await fan.receive("entered")
        assert {c.id for c in await venue.rooms.members("stage:east")} == {stays.id, goes.id}
        await goes.close()
        assert [c.id for c in await venue.rooms.members("stage:east")] == [stays.id]
        assert goes.connection.rooms == set()
        await stays.send("headcount", {"stage_id": "east"})
        assert await stays.receive("count") == {"room": "stage:east", "count": 1}


async def test_broadcast_reaches_every_member_and_nobody_else() -> None:
    async with TestClient(venue) as client:
        alice = await client.connect(headers=badge("alice"))
        bob = await client.connect(headers=badge("bob"))
        outsider = await client.connect(headers=badge("carol"))
        await alice.send("enter_stage", {"stage_id": "west"})
        await bob.send("enter_stage", {"stage_id": "west"})
        await alice.receive()
        await bob.receive()
        await alice.send("cheer", {"stage_id": "west", "chant": "encore"})
        expected = {"event": "crowd_cheer", "payload": {"from": alice.id, "chant": "encore"}}
        assert await bob.receive() == expected
        assert await alice.receive() == expected
        with pytest.raises(asyncio.TimeoutError):
            await outsider.receive(timeout=QUIET)


async def test_members_lists_the_connections_in_a_room() -> None:
    async with TestClient(venue) as client:
        fans = [await client.connect(headers=badge(f"fan-{i}")) for i in range(3)]
        for fan in fans:
            await fan.send("enter_stage", {"stage_id": "south"})
            await fan.receive("entered")
        await fans[0].send("headcount", {"stage_id": "south"})
        assert await fans[0].receive("count") == {"room": "stage:south", "count": 3}
        members = await venue.rooms.members("stage:south")
        assert {m.id for m in members} == {f.id for f in fans}
        await fans[0].send("headcount", {"stage_id": "empty"})
        assert await fans[0].receive("count") == {"room": "stage:empty", "count": 0}


async def test_guard_gets_the_pattern_variable_and_runs_before_admission() -> None:
    async with TestClient(venue) as client:
        fan = await client.connect(headers=badge("fan-1"))
        await fan.send("enter_stage", {"stage_id": "jazz-tent"})
        await fan.receive("entered")
    assert guard_calls == [("stage", "jazz-tent", False)]


async def test_guard_using_is_authenticated_refuses_anonymous_with_permission_error() -> None:
    async with TestClient(venue) as client:
        anonymous = await client.connect()
        assert anonymous.identity.is_authenticated is False
        await anonymous.send("enter_stage", {"stage_id": "main"})
        error = await anonymous.receive()
        assert error["event"] == "__error__"
        assert error["payload"]["code"] == "PERMISSION_ERROR"
        with pytest.raises(asyncio.TimeoutError):
            await anonymous.receive("entered", timeout=QUIET)
        assert anonymous.connection.rooms == set()
        assert [c.id for c in await venue.rooms.members("stage:main")] == []


async def test_multiple_guards_each_protect_their_own_pattern() -> None:
    async with TestClient(venue) as client:
        fan = await client.connect(headers=badge("fan-1"))
        crew = await client.connect(headers=badge("roadie-1", role="crew"))
        # the fan may enter a stage but not backstage
        await fan.send("enter_stage", {"stage_id": "main"})
        assert await fan.receive("entered") == {"room": "stage:main"}
        await fan.send("enter_backstage", {"area": "lighting"})
        assert (await fan.receive("__error__"))["code"] == "PERMISSION_ERROR"
        assert fan.connection.rooms == {"stage:main"}
        # crew may go backstage
        await crew.send("enter_backstage", {"area": "lighting"})
        assert await crew.receive("entered") == {"room": "backstage:lighting"}
        assert crew.connection.rooms == {"backstage:lighting"}
    assert ("backstage", "lighting", False) in guard_calls
    # a guard runs only for rooms matching its own pattern
    assert [c for c in guard_calls if c[0] == "stage"] == [("stage", "main", False)]


async def test_room_join_and_leave_hooks_receive_conn_and_room() -> None:
    async with TestClient(venue) as client:
        fan = await client.connect(headers=badge("fan-1"))
        await fan.send("enter_stage", {"stage_id": "main"})
        await fan.receive("entered")
        assert room_events == [("join", fan.id, "stage:main")]
        await fan.send("exit_stage", {"stage_id": "main"})
        await fan.receive("exited")
        assert room_events == [("join", fan.id, "stage:main"), ("leave", fan.id, "stage:main")]
        # a refused join runs no hook
        anonymous = await client.connect()
        await anonymous.send("enter_stage", {"stage_id": "main"})
        await anonymous.receive("__error__")
        assert len(room_events) == 2


async def test_static_room_join_via_room_api() -> None:
    async with TestClient(venue) as client:
        fan = await client.connect(headers=badge("fan-1"))
        await fan.join_room("foyer")
        assert "foyer" in fan.connection.rooms
        assert [c.id for c in await venue.rooms.members("foyer")] == [fan.id]
        await fan.close()
        assert await venue.rooms.members("foyer") == []
        assert await venue.rooms.exists("foyer")


def test_room_configuration_fields() -> None:
    room = Room(name="vip", private=True, max_members=5, ttl=30, metadata={"floor": 2})
    assert (room.name, room.private, room.max_members, room.ttl) == ("vip", True, 5, 30)
    assert room.metadata == {"floor": 2}
    plain: Any = Room(name="foyer")
    assert (plain.private, plain.max_members) == (False, 0)


async def test_is_authenticated_guard_admits_every_auth_backend_of_the_reference() -> None:
    """socketapp.md names JWTAuth and APIKeyAuth as auth backends; a connection one of them
    admitted is authenticated, so the reference's ``is_authenticated`` guard lets it in."""
    from socketspec.security.auth import APIKeyAuth

    keyed = SocketApp(auth=APIKeyAuth(["kiosk-key-0123456789abcdef0123456789"]))

    @keyed.room_guard("stage:{stage_id}")
    async def ticket_holders_only(conn, stage_id: str) -> bool:
        return conn.identity.is_authenticated

    @keyed.on("enter_stage")
    async def enter(conn, payload: StagePass) -> None:
        await keyed.rooms.join(conn, f"stage:{payload.stage_id}")
        await conn.emit("entered", {"room": f"stage:{payload.stage_id}"})

    async with TestClient(keyed) as client:
        kiosk = await client.connect(headers={"X-API-Key": "kiosk-key-0123456789abcdef0123456789"})
        await kiosk.send("enter_stage", {"stage_id": "main"})
        assert await kiosk.receive("entered", timeout=1) == {"room": "stage:main"}
        assert kiosk.identity.is_authenticated
