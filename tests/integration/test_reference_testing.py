"""Reference patterns for testing with ``TestClient``: both client forms, several
connections, JWT auth through an Authorization header, hooks observed from a test,
receive timeouts, and module-local ``client``/``conn`` fixtures.

The app is a small weather station: ``probe`` is answered with ``reading``, stations
join ``region:{name}`` and publish ``forecast`` to it.
"""

from __future__ import annotations

import asyncio

import jwt
import pytest
from pydantic import BaseModel

from socketspec import SocketApp
from socketspec.errors import ConnectRejected
from socketspec.security.auth import JWTAuth
from socketspec.testing import TestClient

SECRET = "testing-howto-reference-secret-0123456789"
QUIET = 0.1

station = SocketApp()
region_joins: list[tuple[str, str]] = []


class Probe(BaseModel):
    seq: int


class RegionPass(BaseModel):
    region: str


class Forecast(BaseModel):
    region: str
    outlook: str


@station.on("probe")
async def probe(conn, payload: Probe) -> None:
    await conn.emit("reading", {"seq": payload.seq, "celsius": 21})


@station.on("join_region")
async def join_region(conn, payload: RegionPass) -> None:
    await station.rooms.join(conn, f"region:{payload.region}")
    await conn.emit("region_joined", {"region": payload.region})


@station.on("publish_forecast")
async def publish_forecast(conn, payload: Forecast) -> None:
    await station.rooms.broadcast(
        f"region:{payload.region}", "forecast", {"outlook": payload.outlook, "from": conn.id}
    )


@station.on("log_only")
async def log_only(conn, payload: dict) -> None:
    return None


@station.on_room_join
async def remember_region_join(conn, room: str) -> None:
    region_joins.append((conn.id, room))


# -- the form of the tutorials: client context, then connect() ---------------------------------


@pytest.mark.asyncio
async def test_probe_round_trip_with_send_and_whole_message_receive() -> None:
    async with TestClient(station) as client:
        conn = await client.connect()
        await conn.send("probe", {"seq": 42})
        response = await conn.receive()
        assert response["event"] == "reading"
        assert response["payload"]["seq"] == 42
        assert set(response) >= {"event", "payload"}


# -- the DESIGN form: connect() as a context manager, emit and receive(event) ------------------


async def test_connect_context_manager_with_emit_and_receive_event() -> None:
    async with TestClient(station).connect() as conn:
        await conn.emit("probe", {"seq": 7})
        payload = await conn.receive("reading")
        assert payload == {"seq": 7, "celsius": 21}
        server_side = conn.connection
        assert server_side.id == conn.id
    assert conn.closed
    assert station.runtime(conn.id) is None


async def test_receive_event_skips_and_keeps_other_messages() -> None:
    async with TestClient(station).connect() as conn:
        await conn.emit("join_region", {"region": "coast"})
        await conn.emit("probe", {"seq": 1})
        assert await conn.receive("reading") == {"seq": 1, "celsius": 21}
        assert await conn.receive("region_joined") == {"region": "coast"}


# -- several connections -----------------------------------------------------------------------


async def test_two_stations_have_distinct_ids_and_share_a_region() -> None:
    async with TestClient(station) as client:
        alice = await client.connect()
        bob = await client.connect()
        assert alice.id != bob.id

        await alice.send("join_region", {"region": "highlands"})
        await bob.send("join_region", {"region": "highlands"})
        await alice.receive()
        await bob.receive()

        await alice.send("publish_forecast", {"region": "highlands", "outlook": "snow"})
        msg = await bob.receive()
        assert msg["event"] == "forecast"
        assert msg["payload"] == {"outlook": "snow", "from": alice.id}


async def test_receive_broadcast_and_join_room_helpers() -> None:
    async with TestClient(station) as client:
        listener = await client.connect()
        speaker = await client.connect()
        await listener.join_room("region:valley")
        await speaker.send("publish_forecast", {"region": "valley", "outlook": "fog"})
        forecast = await listener.receive_broadcast("forecast", "region:valley")
        assert forecast == {"outlook": "fog", "from": speaker.id}


# -- authentication ----------------------------------------------------------------------------

guarded_station = SocketApp(auth=JWTAuth(secret=SECRET, algorithm="HS256"))


@guarded_station.on("probe")
async def guarded_probe(conn, payload: Probe) -> None:
    await conn.emit("reading", {"seq": payload.seq, "for": conn.identity.user_id})


async def test_connect_without_a_token_is_refused() -> None:
    async with TestClient(guarded_station) as client:
        with pytest.raises(ConnectRejected):
            await client.connect()
        wrong = jwt.encode({"sub": "intruder"}, "w" * 40, algorithm="HS256")
        with pytest.raises(ConnectRejected):
            await client.connect(headers={"Authorization": f"Bearer {wrong}"})
    assert guarded_station.connections == []


async def test_token_in_authorization_header_sets_identity() -> None:
    token = jwt.encode({"sub": "meteorologist_9"}, SECRET, algorithm="HS256")
    async with TestClient(guarded_station) as client:
        conn = await client.connect(headers={"Authorization": f"Bearer {token}"})
        assert conn is not None
        assert conn.identity.user_id == "meteorologist_9"
        await conn.send("probe", {"seq": 3})
        assert await conn.receive("reading") == {"seq": 3, "for": "meteorologist_9"}


async def test_client_auth_token_is_passed_like_a_browser_would() -> None:
    token = jwt.encode({"sub": "browser_user"}, SECRET, algorithm="HS256")
    async with TestClient(guarded_station, auth_token=token).connect() as conn:
        assert conn.identity.user_id == "browser_user"
        assert conn.connection.query_params.get("token") == token


# -- lifecycle hooks observed from a test ------------------------------------------------------


async def test_room_join_hook_records_the_join() -> None:
    region_joins.clear()
    async with TestClient(station) as client:
        conn = await client.connect()
        await conn.send("join_region", {"region": "delta"})
        await conn.receive()
        assert any(room == "region:delta" for _, room in region_joins)
        assert (conn.id, "region:delta") in region_joins


# -- receive with a timeout --------------------------------------------------------------------


async def test_receive_times_out_when_nothing_is_sent_back() -> None:
    async with TestClient(station) as client:
        conn = await client.connect()
        await conn.send("log_only", {"line": "quiet"})
        with pytest.raises(asyncio.TimeoutError):
            await conn.receive(timeout=QUIET)


async def test_receive_event_times_out_too() -> None:
    async with TestClient(station).connect() as conn:
        await conn.emit("probe", {"seq": 1})
        with pytest.raises(asyncio.TimeoutError):
            await conn.receive("never_sent", timeout=QUIET)
        # the message skipped while waiting is still there
        assert await conn.receive("reading") == {"seq": 1, "celsius": 21}


# -- fixtures in the style of a conftest.py ----------------------------------------------------


@pytest.fixture
async def client():
    async with TestClient(station) as c:
        yield c


@pytest.fixture
async def conn(client):
    return await client.connect()


async def test_fixture_connection_answers_probe(conn) -> None:
    await conn.send("probe", {"seq": 11})
    response = await conn.receive()
    assert response["event"] == "reading"
    assert response["payload"]["seq"] == 11


async def test_fixture_client_opens_more_connections(client, conn) -> None:
    other = await client.connect()
    assert other.id != conn.id
    await other.send("join_region", {"region": "plains"})
    await conn.send("join_region", {"region": "plains"})
    await other.receive("region_joined")
    await conn.receive("region_joined")
    await conn.send("publish_forecast", {"region": "plains", "outlook": "wind"})
    assert (await other.receive())["payload"]["outlook"] == "wind"
