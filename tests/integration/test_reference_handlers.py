"""Reference patterns for event handlers, payload validation, lifecycle hooks and errors.

Every app here is written in this project's own words (a library, a parcel desk, an
auction) but has the shapes the SocketSpec reference pages show: handler signatures,
``@socket.on`` options, pydantic constraints, hooks, middleware and the error envelope.
All of it runs through ``socketspec.testing.TestClient``. The SocketApp page's tables (the
reserved system events, the error codes) are held to account once, with that page's code,
in tests/unit/reference/test_socketapp.py.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from datetime import UTC, datetime
from typing import Any, Literal

import jwt
import pytest
from pydantic import BaseModel, Field, field_validator

from socketspec import SocketApp
from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.errors import ConnectRejected, DuplicateEventError
from socketspec.registry import Broadcasts, Emits
from socketspec.rooms import Room
from socketspec.security.auth import JWTAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig
from socketspec.testing import MemoryTransport, TestClient, TestConnection

SECRET = "handlers-reference-secret-0123456789abcdef"
QUIET = 0.15  # how long to wait when nothing should arrive


def token_for(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def nothing_arrives(conn: Any, event: str | None = None) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await conn.receive(event, timeout=QUIET)


# -- first event: a model payload, description and tags, envelope replies ----------------------

mirror_app = SocketApp(docs=True)


class MirrorPayload(BaseModel):
    words: str


@mirror_app.on(
    "mirror",
    description="Send the words back, reversed, to the sender.",
    tags=["demo"],
)
async def mirror_words(conn, payload: MirrorPayload) -> None:
    await conn.emit("mirrored", {"words": payload.words[::-1], "by": conn.id})


@mirror_app.on("explode")
async def explode(conn: Connection, payload: MirrorPayload) -> None:
    raise RuntimeError(f"kaboom with private detail {payload.words}")


async def test_model_handler_replies_with_an_envelope_to_the_sender() -> None:
    async with TestClient(mirror_app) as client:
        conn = await client.connect()
        await conn.send("mirror", {"words": "stressed"})
        reply = await conn.receive()
        assert reply["event"] == "mirrored"
        assert reply["payload"] == {"words": "desserts", "by": conn.id}


async def test_event_description_and_tags_are_registered() -> None:
    definitions = {d.name: d for d in mirror_app.event_definitions()}
    assert definitions["mirror"].description == "Send the words back, reversed, to the sender."
    assert tuple(definitions["mirror"].tags) == ("demo",)
    assert definitions["mirror"].payload_type is MirrorPayload


async def test_handler_exception_becomes_handler_error_and_connection_survives() -> None:
    async with TestClient(mirror_app) as client:
        conn = await client.connect()
        await conn.send("explode", {"words": "hunter2"})
        error = await conn.receive("__error__")
        assert error["code"] == "HANDLER_ERROR"
        assert "hunter2" not in str(error)
        assert "kaboom" not in str(error)
        # the connection is still usable afterwards
        await conn.send("mirror", {"words": "ab"})
        assert (await conn.receive("mirrored"))["words"] == "ba"
        assert not conn.closed


# -- @socket.on with every option --------------------------------------------------------------

auction = SocketApp()


class BidAck(BaseModel):
    lot: str
    accepted: bool


class BidNotice(BaseModel):
    lot: str
    amount: float


class PlaceOffer(BaseModel):
    lot_id: str
    price: float

    @field_validator("price")
    @classmethod
    def price_must_be_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("an offer must be above zero")
        return v


offers_seen: list[tuple[str, float]] = []


@auction.on(
    "place_offer",
    description="Offer a price for a lot.",
    tags=["auction", "bidding"],
    emits=[Emits("offer_ack", model=BidAck)],
    broadcasts=[Broadcasts("offer_placed", room="lot:{lot_id}", model=BidNotice)],
    ordered=False,
    deprecated=True,
)
async def place_offer(conn: Connection, payload: PlaceOffer) -> None:
    offers_seen.append((payload.lot_id, payload.price))
    await conn.emit("offer_ack", BidAck(lot=payload.lot_id, accepted=True))


async def test_on_options_are_kept_on_the_event_definition() -> None:
    (definition,) = [d for d in auction.event_definitions() if d.name == "place_offer"]
    assert definition.description == "Offer a price for a lot."
    assert tuple(definition.tags) == ("auction", "bidding")
    (emitted,) = definition.emits
    assert (emitted.event, emitted.model) == ("offer_ack", BidAck)
    (broadcast,) = definition.broadcasts
    assert (broadcast.event, broadcast.room, broadcast.model) == (
        "offer_placed",
        "lot:{lot_id}",
        BidNotice,
    )
    assert definition.ordered is False
    assert definition.deprecated is True


async def test_custom_validator_rejects_with_validation_error_and_skips_handler() -> None:
    offers_seen.clear()
    async with TestClient(auction) as client:
        conn = await client.connect()
        for bad in (0, -3.5):
            await conn.send("place_offer", {"lot_id": "vase", "price": bad})
            error = await conn.receive("__error__")
            assert error["code"] == "VALIDATION_ERROR"
        await conn.send("place_offer", {"lot_id": "vase", "price": 12.5})
        assert await conn.receive("offer_ack") == {"lot": "vase", "accepted": True}
        assert offers_seen == [("vase", 12.5)]


# -- ordered=True ------------------------------------------------------------------------------

queue_app = SocketApp()
ticket_log: list[str] = []


class Ticket(BaseModel):
    n: int


@queue_app.on("take_ticket", ordered=True)
async def take_ticket(conn: Connection, payload: Ticket) -> None:
    ticket_log.append(f"start {payload.n}")
    # earlier tickets sleep longer: concurrent handling would finish them out of order
    await asyncio.sleep(0.01 * (5 - payload.n))
    ticket_log.append(f"end {payload.n}")
    await conn.emit("ticket_done", {"n": payload.n})


async def test_ordered_handler_processes_one_connections_events_sequentially() -> None:
    ticket_log.clear()
    async with TestClient(queue_app) as client:
        conn = await client.connect()
        for n in range(5):
            await conn.send("take_ticket", {"n": n})
        done = [(await conn.receive("ticket_done"))["n"] for _ in range(5)]
    assert done == [0, 1, 2, 3, 4]
    assert ticket_log == [f"{what} {n}" for n in range(5) for what in ("start", "end")]


# -- payload validation: Field constraints, defaults and Literal, nested models ----------------

library = SocketApp()
library_calls: list[str] = []


class BorrowBook(BaseModel):
    shelf: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)


class ReserveSeat(BaseModel):
    seat_id: str
    tier: Literal["standard", "premium"] = "standard"
    window: bool = False


class Courier(BaseModel):
    courier_id: str
    track: bool = True


class Parcel(BaseModel):
    to: Courier
    label: str


@library.on("borrow_book")
async def borrow_book(conn, payload: BorrowBook) -> None:
    library_calls.append("borrow_book")
    await conn.emit("borrowed", {"shelf": payload.shelf, "title": payload.title})


@library.on("reserve_seat")
async def reserve_seat(conn, payload: ReserveSeat) -> None:
    library_calls.append("reserve_seat")
    await conn.emit("seat_reserved", payload.model_dump())


@library.on("send_parcel")
async def send_parcel(conn, payload: Parcel) -> None:
    library_calls.append("send_parcel")
    tracked = "tracked" if payload.to.track else "untracked"
    await conn.emit("parcel_sent", {"courier": payload.to.courier_id, "mode": tracked})


@library.on("opening_hours")
async def opening_hours(conn) -> None:
    await conn.emit("hours", {"open": "09:00"})


@library.on("library_status")
async def library_status(conn: Connection) -> None:
    await conn.emit("status", {"for": conn.id})


async def test_field_constraints_accept_valid_and_reject_invalid_payloads() -> None:
    library_calls.clear()
    async with TestClient(library) as client:
        conn = await client.connect()
        await conn.send("borrow_book", {"shelf": "s" * 64, "title": "Dune"})
        assert await conn.receive("borrowed") == {"shelf": "s" * 64, "title": "Dune"}
        bad_payloads = [
            {"shelf": "", "title": "Dune"},
            {"shelf": "s" * 65, "title": "Dune"},
            {"shelf": "fiction", "title": ""},
            {"shelf": "fiction", "title": "t" * 501},
            {"shelf": "fiction"},
            {"shelf": 7, "title": "Dune"},
        ]
        for bad in bad_payloads:
            await conn.send("borrow_book", bad)
            error = await conn.receive("__error__")
            assert error["code"] == "VALIDATION_ERROR", bad
            assert error["message"] == "Invalid message format"
            assert isinstance(error["request_id"], str) and error["request_id"]
            assert isinstance(error["details"], dict)
        await nothing_arrives(conn, "borrowed")
    assert library_calls == ["borrow_book"]


async def test_optional_fields_take_defaults_and_literal_is_enforced() -> None:
    library_calls.clear()
    async with TestClient(library) as client:
        conn = await client.connect()
        await conn.send("reserve_seat", {"seat_id": "A7"})
        assert await conn.receive("seat_reserved") == {
            "seat_id": "A7",
            "tier": "standard",
            "window": False,
        }
        await conn.send("reserve_seat", {"seat_id": "B2", "tier": "premium", "window": True})
        assert await conn.receive("seat_reserved") == {
            "seat_id": "B2",
            "tier": "premium",
            "window": True,
        }
        await conn.send("reserve_seat", {"seat_id": "C1", "tier": "royal"})
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
    assert library_calls == ["reserve_seat", "reserve_seat"]


async def test_nested_models_are_validated_with_their_defaults() -> None:
    library_calls.clear()
    async with TestClient(library) as client:
        conn = await client.connect()
        await conn.send("send_parcel", {"to": {"courier_id": "c-9"}, "label": "books"})
        assert await conn.receive("parcel_sent") == {"courier": "c-9", "mode": "tracked"}
        await conn.send(
            "send_parcel", {"to": {"courier_id": "c-9", "track": False}, "label": "maps"}
        )
        assert await conn.receive("parcel_sent") == {"courier": "c-9", "mode": "untracked"}
        await conn.send("send_parcel", {"to": {"track": True}, "label": "maps"})
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
    assert library_calls == ["send_parcel", "send_parcel"]


async def test_handler_without_payload_ignores_whatever_payload_is_sent() -> None:
    async with TestClient(library) as client:
        conn = await client.connect()
        await conn.send("opening_hours", {"anything": [1, 2, 3], "nested": {"x": None}})
        assert await conn.receive("hours") == {"open": "09:00"}
        await conn.send("opening_hours")
        assert await conn.receive("hours") == {"open": "09:00"}
        await conn.send("library_status", {"ignored": True})
        assert await conn.receive("status") == {"for": conn.id}
        await nothing_arrives(conn, "__error__")


async def test_malformed_json_and_missing_event_key_are_validation_errors() -> None:
    async with TestClient(library) as client:
        conn = await client.connect()
        await conn.send_raw("{not json")
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        await conn.send_raw('{"payload": {"shelf": "x", "title": "y"}}')
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        await conn.send("opening_hours")
        assert await conn.receive("hours") == {"open": "09:00"}


# -- payload size limit ------------------------------------------------------------------------


class Note(BaseModel):
    body: str


def notes_app(**options: Any) -> tuple[SocketApp, list[int]]:
    app = SocketApp(**options)
    sizes: list[int] = []

    @app.on("jot")
    async def jot(conn, payload: Note) -> None:
        sizes.append(len(payload.body))
        await conn.emit("jotted", {"length": len(payload.body)})

    return app, sizes


async def test_max_payload_size_rejects_larger_messages_and_keeps_the_connection() -> None:
    app, sizes = notes_app(max_payload_size=1024)
    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send("jot", {"body": "x" * 2000})
        assert (await conn.receive("__error__"))["code"] == "PAYLOAD_TOO_LARGE"
        await conn.send("jot", {"body": "x" * 500})
        assert await conn.receive("jotted") == {"length": 500}
        assert not conn.closed
    assert sizes == [500]


async def test_default_limit_is_64_kib_and_can_be_raised() -> None:
    default_app, _ = notes_app()
    assert default_app.max_payload_size == 65536
    async with TestClient(default_app) as client:
        conn = await client.connect()
        await conn.send("jot", {"body": "y" * 70_000})
        assert (await conn.receive("__error__"))["code"] == "PAYLOAD_TOO_LARGE"
    roomy_app, sizes = notes_app(max_payload_size=1_048_576)
    async with TestClient(roomy_app) as client:
        conn = await client.connect()
        await conn.send("jot", {"body": "y" * 200_000})
        assert await conn.receive("jotted") == {"length": 200_000}
    assert sizes == [200_000]


# -- startup validation: a duplicate event name (reserved names: tests/unit/reference) ---------


async def test_two_handlers_for_one_event_fail_at_startup() -> None:
    app = SocketApp()

    @app.on("checkout")
    async def first(conn) -> None:  # pragma: no cover
        pass

    @app.on("checkout")
    async def second(conn) -> None:  # pragma: no cover
        pass

    with pytest.raises(DuplicateEventError):
        app.startup()


# -- middleware --------------------------------------------------------------------------------

audited = SocketApp()
audit_trail: list[tuple[str, str, str]] = []


class Stamp(BaseModel):
    code: str = Field(min_length=3)


@audited.middleware
async def outer_audit(conn, event, payload, next_handler):
    audit_trail.append(("outer", conn.id, event))
    await next_handler(conn, event, payload)


@audited.middleware
async def inner_audit(conn, event, payload, next_handler):
    audit_trail.append(("inner", conn.id, event))
    await next_handler(conn, event, payload)


@audited.on("stamp")
async def stamp(conn, payload: Stamp) -> None:
    audit_trail.append(("handler", conn.id, payload.code))
    await conn.emit("stamped", {"code": payload.code})


async def test_middleware_wraps_every_event_in_registration_order() -> None:
    audit_trail.clear()
    async with TestClient(audited) as client:
        conn = await client.connect()
        await conn.send("stamp", {"code": "ok-1"})
        assert await conn.receive("stamped") == {"code": "ok-1"}
        assert audit_trail == [
            ("outer", conn.id, "stamp"),
            ("inner", conn.id, "stamp"),
            ("handler", conn.id, "ok-1"),
        ]
        # middleware runs before payload validation: it sees the rejected event too
        audit_trail.clear()
        await conn.send("stamp", {"code": "x"})
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        assert audit_trail == [("outer", conn.id, "stamp"), ("inner", conn.id, "stamp")]


# -- lifecycle hooks and the Connection object -------------------------------------------------

front_desk = SocketApp(rooms=[Room(name="reception")])
departures: list[tuple[str, str]] = []
failures: list[tuple[str, Exception]] = []


@front_desk.on_connect
async def greet_guest(conn: Connection) -> None:
    await conn.emit("greeting", {"conn_id": conn.id, "message": "Welcome to the front desk"})


@front_desk.on_disconnect
async def note_departure(conn: Connection, reason: str) -> None:
    departures.append((conn.id, reason))


@front_desk.on_error
async def note_failure(conn: Connection, error: Exception) -> None:
    failures.append((conn.id, error))


@front_desk.on("check_in")
async def check_in(conn: Connection) -> None:
    await front_desk.rooms.join(conn, "reception")


@front_desk.on("about_me")
async def about_me(conn: Connection) -> None:
    await conn.emit(
        "me",
        {
            "conn_id": conn.id,
            "user_id": conn.identity.user_id,
            "rooms": list(conn.rooms),
            "connected": conn.connected_at.isoformat(),
            "last_active": conn.last_active.isoformat(),
        },
    )


@front_desk.on("evict")
async def evict(conn: Connection) -> None:
    await conn.disconnect("banned")


@front_desk.on("broken_key")
async def broken_key(conn: Connection) -> None:
    raise LookupError("room key 42 missing")


@front_desk.on("notify_me")
async def notify_me(conn: Connection) -> None:
    await conn.emit("notification", {"text": "Your room is ready"})


@front_desk.on("members_only")
async def members_only(conn, payload) -> None:
    if not conn.identity.user_id:
        await conn.emit("__error__", {"code": "AUTH_ERROR"})
        return
    await conn.emit("members_lounge", {"user": conn.identity.user_id, "asked": payload})


async def test_on_connect_hook_emits_a_welcome_before_anything_else() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        first = await conn.receive()
        assert first == {
            "event": "greeting",
            "payload": {"conn_id": conn.id, "message": "Welcome to the front desk"},
        }


async def test_on_disconnect_hook_gets_the_reason() -> None:
    departures.clear()
    async with TestClient(front_desk) as client:
        leaving = await client.connect()
        await leaving.close()
        evicted = await client.connect()
        await evicted.send("evict")
        assert await evicted.wait_closed(timeout=2) == 1000
    reasons = dict(departures)
    assert isinstance(reasons[leaving.id], str) and reasons[leaving.id]
    assert reasons[evicted.id] == "banned"
    assert len(departures) == 2


async def test_on_error_hook_receives_the_exception() -> None:
    failures.clear()
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        await conn.send("broken_key")
        error = await conn.receive("__error__")
        assert error["code"] == "HANDLER_ERROR"
        assert "42" not in error["message"]
    ((conn_id, exc),) = failures
    assert conn_id == conn.id
    assert isinstance(exc, LookupError)
    assert str(exc) == "room key 42 missing"


async def test_whoami_style_handler_reads_connection_attributes() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        await conn.receive("greeting")
        opened = conn.connection.last_active
        await asyncio.sleep(0.01)
        await conn.send("check_in")
        await conn.send("about_me")
        me = await conn.receive("me")
        assert me["conn_id"] == conn.id
        assert me["user_id"] is None
        assert me["rooms"] == ["reception"]
        connected = datetime.fromisoformat(me["connected"])
        last_active = datetime.fromisoformat(me["last_active"])
        assert connected == conn.connection.connected_at
        assert connected.utcoffset() is not None and connected.utcoffset().total_seconds() == 0
        assert last_active > opened
        assert last_active >= connected
        assert abs((datetime.now(UTC) - connected).total_seconds()) < 5


async def test_handler_can_emit_a_notification_to_its_own_connection() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        other = await client.connect()
        await conn.send("notify_me")
        assert await conn.receive("notification") == {"text": "Your room is ready"}
        await nothing_arrives(other, "notification")


async def test_handler_checks_identity_and_emits_its_own_auth_error() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        await conn.send("members_only", {"lounge": "blue"})
        assert (await conn.receive("__error__"))["code"] == "AUTH_ERROR"
        await nothing_arrives(conn, "members_lounge")


async def test_connection_exposes_headers_query_params_and_namespace() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect(headers={"X-Kiosk": "lobby-3"}, query_params={"lang": "fi"})
        server_side = conn.connection
        assert server_side.headers["x-kiosk"] == "lobby-3"
        assert server_side.query_params == {"lang": "fi"}
        assert server_side.namespace == "/"
        assert isinstance(server_side.id, str) and len(server_side.id) == 36


async def test_unbound_connection_emit_and_disconnect_raise_runtime_error() -> None:
    now = datetime.now(UTC)
    loose = Connection(
        id="not-bound",
        raw_socket=None,
        identity=Identity(),
        session=SessionInfo(started_at=now),
        connected_at=now,
        last_active=now,
    )
    assert loose.rooms == set()
    with pytest.raises(RuntimeError):
        await loose.emit("anything", {})
    with pytest.raises(RuntimeError):
        await loose.disconnect("bye")


# -- Identity, SessionInfo and JWT auth --------------------------------------------------------


async def test_unauthenticated_identity_fields_are_empty() -> None:
    async with TestClient(front_desk) as client:
        conn = await client.connect()
        identity = conn.identity
        assert identity.user_id is None
        assert identity.role is None
        assert identity.token_expires_at is None
        assert identity.extra == {}
        assert identity.is_authenticated is False


async def test_jwt_identity_and_session_info() -> None:
    app = SocketApp(auth=JWTAuth(secret=SECRET, algorithm="HS256"))

    @app.on("members_only")
    async def lounge(conn, payload) -> None:
        if not conn.identity.user_id:
            await conn.emit("__error__", {"code": "AUTH_ERROR"})
            return
        await conn.emit("members_lounge", {"user": conn.identity.user_id})

    exp = int(time.time()) + 3600
    token = token_for(sub="reader-17", role="librarian", exp=exp, scope="read write")
    async with TestClient(app) as client:
        conn = await client.connect(headers={"Authorization": f"Bearer {token}"})
        identity = conn.identity
        assert identity.user_id == "reader-17"
        assert identity.role == "librarian"
        assert identity.token_expires_at == datetime.fromtimestamp(exp, UTC)
        assert isinstance(identity.extra, dict)
        assert identity.scopes == ["read", "write"]
        assert identity.claims["sub"] == "reader-17"
        assert identity.raw_token == token
        assert identity.is_authenticated
        session = conn.connection.session
        assert session.started_at == conn.connection.connected_at
        assert session.token_expires_at == identity.token_expires_at
        assert session.expires_at is not None and session.expires_at > session.started_at
        await conn.send("members_only", {})
        assert await conn.receive("members_lounge") == {"user": "reader-17"}


async def test_session_without_max_duration_has_no_expiry() -> None:
    app = SocketApp(session=SessionConfig(max_duration=0))

    @app.on("noop")
    async def noop(conn) -> None:  # pragma: no cover
        pass

    async with TestClient(app) as client:
        conn = await client.connect()
        assert conn.connection.session.expires_at is None


class Loaf(BaseModel):
    kind: str


def bakery(**options: Any) -> SocketApp:
    app = SocketApp(**options)

    @app.on("bake")
    async def bake(conn, payload: Loaf) -> None:
        await conn.emit("baked", {"kind": payload.kind})

    @app.on("burn")
    async def burn(conn) -> None:
        raise ValueError("oven at 900 degrees")

    @app.on("enter_kitchen")
    async def enter_kitchen(conn) -> None:
        await app.rooms.join(conn, "kitchen:main")

    @app.on("announce")
    async def announce(conn) -> None:
        await app.rooms.broadcast("oven:nowhere", "ding", {}, strict=True)

    @app.room_guard("kitchen:{station}")
    async def staff_only(conn, station: str) -> bool:
        return conn.identity.role == "baker"

    return app


def assert_error_envelope(message: dict[str, Any], code: str) -> None:
    assert message["event"] == "__error__"
    payload = message["payload"]
    assert payload["code"] == code
    assert {"code", "event", "message", "request_id", "details"} <= set(payload)
    assert isinstance(payload["message"], str)
    assert isinstance(payload["request_id"], str) and payload["request_id"]
    assert isinstance(payload["details"], dict)


async def next_error(conn: Any) -> dict[str, Any]:
    return await conn.receive_message("__error__", timeout=3)


async def test_event_level_error_codes_are_sent_in_the_error_envelope() -> None:
    app = bakery(max_payload_size=256, rate_limit=RateLimit(events=5, per_seconds=3600))
    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.send("no_such_event")
        assert_error_envelope(await next_error(conn), "UNKNOWN_EVENT")
        await conn.send("bake", {"kind": 3})
        assert_error_envelope(await next_error(conn), "VALIDATION_ERROR")
        await conn.send("bake", {"kind": "z" * 400})
        assert_error_envelope(await next_error(conn), "PAYLOAD_TOO_LARGE")
        await conn.send("burn")
        handler_error = await next_error(conn)
        assert_error_envelope(handler_error, "HANDLER_ERROR")
        assert "900" not in handler_error["payload"]["message"]
        await conn.send("enter_kitchen")
        assert_error_envelope(await next_error(conn), "PERMISSION_ERROR")
        await conn.send("announce")
        assert_error_envelope(await next_error(conn), "ROOM_NOT_FOUND")
        # five events admitted so far (the oversized one never reached the bucket)
        await conn.send("bake", {"kind": "rye"})
        assert_error_envelope(await next_error(conn), "RATE_LIMIT_ERROR")
        assert not conn.closed


async def test_auth_error_at_connect_time_closes_with_4001() -> None:
    app = bakery(auth=JWTAuth(secret=SECRET, algorithm="HS256"))
    transport = MemoryTransport()
    bad = jwt.encode({"sub": "mallory"}, "x" * 40, algorithm="HS256")
    with pytest.raises(ConnectRejected):
        await app.handle_connect(transport, {"authorization": f"Bearer {bad}"}, {})
    message = transport.inbox.get_nowait()
    assert_error_envelope(message, "AUTH_ERROR")
    assert transport.close_code == 4001


async def test_idle_timeout_error_and_close() -> None:
    app = bakery(session=SessionConfig(idle_timeout=0.1))
    async with TestClient(app) as client:
        conn = await client.connect()
        assert_error_envelope(await next_error(conn), "IDLE_TIMEOUT")
        assert await conn.wait_closed(timeout=2) == 4004


async def test_session_expired_error_and_close() -> None:
    app = bakery(session=SessionConfig(max_duration=0.1))
    async with TestClient(app) as client:
        conn = await client.connect()
        assert_error_envelope(await next_error(conn), "SESSION_EXPIRED")
        assert await conn.wait_closed(timeout=2) == 4003


async def test_auth_expired_mid_session_error_and_close() -> None:
    app = bakery(auth=JWTAuth(secret=SECRET, algorithm="HS256"))
    token = token_for(sub="baker-1", role="baker", exp=int(time.time()) + 2)
    async with TestClient(app) as client:
        conn = await client.connect(headers={"Authorization": f"Bearer {token}"})
        await conn.send("bake", {"kind": "sourdough"})
        assert await conn.receive("baked") == {"kind": "sourdough"}
        assert_error_envelope(await next_error(conn), "AUTH_EXPIRED")
        assert await conn.wait_closed(timeout=2) == 4002


# -- constructor parameters (their defaults and that each is kept: tests/unit/reference) -------


async def test_allowed_origins_refuse_other_origins() -> None:
    app = bakery(allowed_origins=["https://kiosk.example"])
    with pytest.raises(ConnectRejected):
        await TestClient(app, origin="https://evil.example").connect()
    async with TestClient(app, origin="https://kiosk.example").connect() as conn:
        await conn.send("bake", {"kind": "rye"})
        assert await conn.receive("baked") == {"kind": "rye"}


async def test_connections_belong_to_the_apps_namespace() -> None:
    app = SocketApp(namespace="/desk")

    @app.on("ring_bell")
    async def ring_bell(conn: Connection) -> None:
        await conn.emit("bell", {"namespace": conn.namespace})

    async with TestClient(app).connect() as conn:
        await conn.send("ring_bell")
        assert await conn.receive("bell") == {"namespace": "/desk"}


async def test_disconnect_without_a_reason_uses_server_close() -> None:
    app = SocketApp()
    reasons: list[str] = []

    @app.on("leave_now")
    async def leave_now(conn: Connection) -> None:
        await conn.disconnect()

    @app.on_disconnect
    async def remember(conn: Connection, reason: str) -> None:
        reasons.append(reason)

    async with TestClient(app).connect() as conn:
        await conn.send("leave_now")
        assert await conn.wait_closed(timeout=2) == 1000
    assert reasons == ["server_close"]


# -- middleware written as the reference shows it (no return) and acks (DESIGN section 3) ------


async def test_reference_style_middleware_does_not_swallow_the_ack() -> None:
    """DESIGN 3: when the handler returns a value the server sends ``__ack__``. The reference's
    middleware awaits ``next_handler`` without returning its result; installing it must not
    stop the handler's value from reaching the client."""
    app = SocketApp()
    seen: list[str] = []

    @app.middleware
    async def log_events(conn, event, payload, next_handler):
        seen.append(event)
        await next_handler(conn, event, payload)

    @app.on("weigh")
    async def weigh(conn, payload: Loaf) -> dict[str, Any]:
        return {"kind": payload.kind, "grams": 800}

    async with TestClient(app).connect() as conn:
        reply = await conn.call("weigh", {"kind": "rye"}, timeout=1)
    assert seen == ["weigh"]
    assert reply == {"kind": "rye", "grams": 800}


async def test_receive_default_timeout_is_five_seconds() -> None:
    default = inspect.signature(TestConnection.receive).parameters["timeout"].default
    assert default == 5
