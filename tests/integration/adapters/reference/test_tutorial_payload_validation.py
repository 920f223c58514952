"""The payload-validation tutorial's blocks served under uvicorn through the adapter, over
real sockets. The page presumes the app of the first tutorial (``socket``), served with its
adapter lines; its ``BidPayload`` has no handler on the page, so the test gives it one, and
a ``watch`` event that joins the ``chat:`` room ``send_message`` broadcasts to. Block 6
replaces the app with one whose size limit is 1 MB; it gets block 1's handler.
"""

from __future__ import annotations

from typing import Any

from asgikit import StartUvicorn, recv, recv_event
from reference_pages import ADAPTER_LINES
from refkit import client, emit, run_page, silent

PAGE = "tutorial-payload-validation"

FIRST_TUTORIALS_APP = """\
from socketspec import SocketApp

socket = SocketApp(docs=True)
"""

TEST_HANDLERS = """\
@socket.on("place_bid")
async def place_bid(conn, payload: BidPayload) -> None:
    await conn.emit("bid_placed", {"item_id": payload.item_id, "amount": payload.amount})

@socket.on("watch")
async def watch(conn, payload: dict) -> None:
    await socket.rooms.join(conn, f"chat:{payload['room']}")
    await conn.emit("watching", {})
"""


def page_app() -> Any:
    return run_page(PAGE, FIRST_TUTORIALS_APP, 1, 2, 3, 4, 5, TEST_HANDLERS, ADAPTER_LINES)


async def validation_error(ws: Any) -> dict[str, Any]:
    error = await recv_event(ws, "__error__")
    assert error["payload"]["code"] == "VALIDATION_ERROR", error
    payload: dict[str, Any] = error["payload"]
    return payload


async def test_a_constraint_violation_is_refused_and_the_handler_never_runs(
    start_uvicorn: StartUvicorn,
) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (watcher, _), client(server.ws + "/ws") as (ws, _):
        await emit(watcher, "watch", {"room": "general"})
        await recv_event(watcher, "watching")
        await emit(ws, "send_message", {"room": "", "text": "hi"})
        error = await validation_error(ws)
        assert error["message"] == "Invalid message format"
        assert set(error) >= {"code", "message", "request_id", "details"}
        await silent(watcher)  # nothing was broadcast
        await emit(ws, "send_message", {"room": "general", "text": "hi"})
        assert (await recv(watcher))["payload"] == {"text": "hi"}


async def test_defaults_literals_and_nested_models(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await emit(ws, "join_room", {"room_id": "r1"})  # role and mute take their defaults
        await emit(ws, "join_room", {"room_id": "r1", "role": "moderator", "mute": True})
        await emit(ws, "direct_message", {"to": {"user_id": "u7"}, "text": "psst"})
        await emit(ws, "ping")
        assert await recv(ws) == {"event": "pong", "payload": {}}  # and no error before it
        await emit(ws, "join_room", {"room_id": "r1", "role": "owner"})
        await validation_error(ws)
        await emit(ws, "direct_message", {"to": {"notify": True}, "text": "psst"})
        await validation_error(ws)


async def test_a_custom_validator_is_a_validation_error_too(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        for amount in (0, -5):
            await emit(ws, "place_bid", {"item_id": "lamp", "amount": amount})
            error = await validation_error(ws)
            assert "Bid amount must be positive" in str(error["details"])
        await emit(ws, "place_bid", {"item_id": "lamp", "amount": 12.5})
        assert (await recv(ws))["payload"] == {"item_id": "lamp", "amount": 12.5}


async def test_an_event_without_a_payload_argument_ignores_the_payload(
    start_uvicorn: StartUvicorn,
) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await emit(ws, "ping", {"anything": ["at", "all"]})
        assert await recv(ws) == {"event": "pong", "payload": {}}


async def test_malformed_json_and_a_missing_event_key(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(page_app()["app"])
    async with client(server.ws + "/ws") as (ws, _):
        await ws.send("{not json")
        await validation_error(ws)
        await ws.send('{"payload": {}}')
        await validation_error(ws)


async def test_the_payload_size_limit_default_and_raised(start_uvicorn: StartUvicorn) -> None:
    text = "x" * 100_000  # above the default 64 KB, below block 6's 1 MB
    default = await start_uvicorn(page_app()["app"])
    async with client(default.ws + "/ws") as (ws, _):
        await emit(ws, "send_message", {"room": "r", "text": text})
        assert (await recv(ws))["payload"]["code"] == "PAYLOAD_TOO_LARGE"
    raised = run_page(
        PAGE, FIRST_TUTORIALS_APP, 6, 1, TEST_HANDLERS.replace("BidPayload", "dict"), ADAPTER_LINES
    )
    assert raised["socket"].max_payload_size == 1_048_576
    server = await start_uvicorn(raised["app"])
    async with client(server.ws + "/ws") as (ws, _):
        # past the limit
        await emit(ws, "send_message", {"room": "r", "text": "x" * 1_100_000})
        assert (await recv(ws))["payload"]["code"] == "PAYLOAD_TOO_LARGE"
        # within it the message reaches the handler, whose text limit (500) refuses it
        await emit(ws, "send_message", {"room": "r", "text": text})
        await validation_error(ws)
