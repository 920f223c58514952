"""The payload-validation tutorial's code, run through the in-process TestClient.

The tutorial continues an app the reader already has, so the prelude gives it
one (``socket = SocketApp()``); blocks 1 to 5 then run on it in page order.
Block 4 defines a model and no handler: the test registers one that takes it.
Block 6 builds a second app with a larger size limit and runs on its own.
"""

from __future__ import annotations

import json
from typing import Any

from pagecode import run_blocks
from reference_pages import block

from socketspec.testing import TestClient, TestConnection

PAGE = "tutorial-payload-validation"

PRELUDE = """\
from socketspec import SocketApp

socket = SocketApp()
"""

page = run_blocks(PAGE, {"prelude": PRELUDE, **{n: block(PAGE, n) for n in range(1, 6)}})
socket = page["socket"]
BidPayload = page["BidPayload"]
bids: list[Any] = []


@socket.on("place_bid")
async def place_bid(conn: Any, payload: BidPayload) -> None:
    bids.append(payload)
    await conn.emit("bid_placed", {"amount": payload.amount})


async def nothing_arrived(conn: TestConnection, event: str) -> bool:
    await conn.wait_idle()
    return all(message["event"] != event for message in conn.pending())


async def test_a_valid_message_reaches_the_room() -> None:
    async with TestClient(socket) as client:
        sender = await client.connect()
        listener = await client.connect()
        await listener.join_room("chat:lobby")
        await sender.send("send_message", {"room": "lobby", "text": "hi"})
        assert await listener.receive("new_message") == {"text": "hi"}


async def test_an_empty_room_gets_the_error_the_tutorial_shows_and_no_broadcast() -> None:
    async with TestClient(socket) as client:
        sender = await client.connect()
        listener = await client.connect()
        await listener.join_room("chat:")
        await sender.send("send_message", {"room": "", "text": "hi"})
        error = await sender.receive("__error__")
        assert await nothing_arrived(sender, "new_message")
        assert await nothing_arrived(listener, "new_message")
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == "Invalid message format"
    assert isinstance(error["request_id"], str) and error["request_id"]
    assert isinstance(error["details"], dict)
    assert [tuple(e["loc"]) for e in error["details"]["errors"]] == [("room",)]


async def test_field_lengths_are_enforced_at_both_ends() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        for bad in (
            {"room": "r" * 65, "text": "hi"},
            {"room": "lobby", "text": ""},
            {"room": "lobby", "text": "t" * 501},
        ):
            await conn.send("send_message", bad)
            assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        await conn.send("send_message", {"room": "r" * 64, "text": "t" * 500})
        assert await nothing_arrived(conn, "__error__")


async def test_optional_fields_take_their_defaults_and_literals_are_checked() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("join_room", {"room_id": "plain"})
        await conn.send("join_room", {"room_id": "mod", "role": "moderator", "mute": True})
        await conn.send("join_room", {"room_id": "owner", "role": "owner"})
        error = await conn.receive("__error__")
        await conn.wait_idle()
        assert conn.connection.rooms == {"room:plain", "room:mod"}
    assert error["code"] == "VALIDATION_ERROR"
    assert [tuple(e["loc"]) for e in error["details"]["errors"]] == [("role",)]


async def test_nested_models_are_validated_all_the_way_down() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("direct_message", {"to": {"user_id": "u1"}, "text": "hi"})
        await conn.send("direct_message", {"to": {"user_id": "u1", "notify": False}, "text": "hi"})
        assert await nothing_arrived(conn, "__error__")
        await conn.send("direct_message", {"to": {"notify": True}, "text": "hi"})
        error = await conn.receive("__error__")
    assert error["code"] == "VALIDATION_ERROR"
    assert [tuple(e["loc"]) for e in error["details"]["errors"]] == [("to", "user_id")]


async def test_a_custom_validator_refuses_like_any_other_constraint() -> None:
    bids.clear()
    async with TestClient(socket) as client:
        conn = await client.connect()
        for amount in (0, -5):
            await conn.send("place_bid", {"item_id": "lamp", "amount": amount})
            error = await conn.receive("__error__")
            assert error["code"] == "VALIDATION_ERROR"
            assert "Bid amount must be positive" in json.dumps(error["details"])
        await conn.send("place_bid", {"item_id": "lamp", "amount": 12.5})
        assert await conn.receive("bid_placed") == {"amount": 12.5}
    assert [bid.amount for bid in bids] == [12.5]


async def test_a_handler_without_a_payload_ignores_whatever_is_sent() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("ping", {"anything": [1, 2, 3]})
        assert await conn.receive("pong") == {}
        await conn.send_raw('{"event": "ping"}')
        assert await conn.receive("pong") == {}
        assert await nothing_arrived(conn, "__error__")


async def test_malformed_json_and_a_missing_event_key_are_validation_errors() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        for raw in ("{not json", '{"payload": {}}'):
            await conn.send_raw(raw)
            assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"


async def test_the_default_limit_is_64_kb() -> None:
    async with TestClient(socket) as client:
        conn = await client.connect()
        await conn.send("send_message", {"room": "lobby", "text": "x" * 70_000})
        error = await conn.receive("__error__")
    assert error["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_larger_limit_is_set_on_the_app() -> None:
    bigger = run_blocks(PAGE, {"prelude": PRELUDE, 6: block(PAGE, 6)})["socket"]

    @bigger.on("upload")
    async def upload(conn: Any, payload: dict[str, Any]) -> None:
        await conn.emit("stored", {"size": len(payload["blob"])})

    async with TestClient(bigger) as client:
        conn = await client.connect()
        await conn.send("upload", {"blob": "b" * 500_000})
        assert await conn.receive("stored") == {"size": 500_000}
        await conn.send("upload", {"blob": "b" * 1_100_000})
        assert (await conn.receive("__error__"))["code"] == "PAYLOAD_TOO_LARGE"
