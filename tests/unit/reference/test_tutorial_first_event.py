"""The "first event" tutorial's code, run through the in-process TestClient.

Block 1 is the tutorial's echo app without its four adapter lines (the
``FastAPI`` and ``mount`` imports, ``app = FastAPI()`` and ``mount(...)``):
serving it under uvicorn is the adapter's business, tested over real sockets
with the adapter. Block 2 is a handler signature without a body, shown for
reading, not for running. Block 3 is the tutorial's own test; it is collected
here as it is written. The other tests hold the app to what the tutorial says
about it: the docs UI's payload table, what is checked when, the envelope a
JavaScript client sends, and the order of the inbound pipeline.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pagecode import run_blocks
from reference_pages import block, without_adapter_lines

from socketspec.apidocs.schema import socketspec_schema
from socketspec.errors import DuplicateEventError, ReservedEventNameError
from socketspec.testing import TestClient

PAGE = "tutorial-first-event"

# Step 1, "Register the Event", without the adapter lines; step 4, "Write a Test".
BLOCK_1 = without_adapter_lines(block(PAGE, 1))

page = run_blocks(PAGE, {1: BLOCK_1, 3: block(PAGE, 3)})
test_echo = page["test_echo"]


def fresh_app() -> Any:
    """A new copy of the tutorial's app, for tests that add to it."""
    return run_blocks(PAGE, {1: BLOCK_1})["socket"]


async def test_the_answer_names_the_sender() -> None:
    async with TestClient(page["socket"]) as client:
        conn = await client.connect()
        await conn.send("echo", {"echo": "who am I?"})
        assert await conn.receive("echo_response") == {"echo": "who am I?", "from": conn.id}


async def test_the_javascript_clients_envelope_gets_the_same_answer() -> None:
    # Step 3 sends JSON.stringify({event, payload}) as one text message.
    async with TestClient(page["socket"]) as client:
        conn = await client.connect()
        await conn.send_raw(json.dumps({"event": "echo", "payload": {"echo": "hello world"}}))
        response = await conn.receive()
    assert response == {
        "event": "echo_response",
        "payload": {"echo": "hello world", "from": conn.id},
    }


def test_the_docs_ui_shows_the_echo_card_with_its_payload_table() -> None:
    schema = socketspec_schema(page["socket"])
    (echo,) = [event for event in schema["events"] if event["name"] == "echo"]
    assert echo["tags"] == ["demo"]
    assert echo["description"] == "Echo a message back to the sender."
    assert echo["payload"]["properties"]["echo"]["type"] == "string"
    assert echo["payload"]["required"] == ["echo"]
    assert page["socket"].docs is True


async def test_an_invalid_payload_is_refused_and_the_handler_never_runs() -> None:
    async with TestClient(page["socket"]) as client:
        conn = await client.connect()
        await conn.send("echo", {"echo": ["not", "a", "string"]})
        error = await conn.receive("__error__")
        await conn.send("echo", {})
        missing = await conn.receive("__error__")
        await conn.wait_idle()
        assert [m["event"] for m in conn.pending() if m["event"] == "echo_response"] == []
    assert error["code"] == missing["code"] == "VALIDATION_ERROR"


async def test_two_handlers_for_one_event_are_refused_before_the_first_connection() -> None:
    socket = fresh_app()

    @socket.on("echo")
    async def second_echo(conn: Any) -> None:
        return None

    with pytest.raises(DuplicateEventError, match="echo"):
        async with TestClient(socket) as client:
            await client.connect()
    assert socket.connections == []


async def test_a_reserved_event_name_is_refused_before_the_first_connection() -> None:
    socket = fresh_app()
    with pytest.raises(ReservedEventNameError, match="__ping__"):

        @socket.on("__ping__")
        async def my_ping(conn: Any) -> None:
            return None

        async with TestClient(socket) as client:
            await client.connect()
    assert socket.connections == []


async def test_the_inbound_pipeline_in_the_tutorials_order() -> None:
    socket = fresh_app()
    seen_by_middleware: list[tuple[str, dict[str, Any]]] = []

    @socket.middleware
    async def record(conn: Any, event: str, payload: dict[str, Any], call_next: Any) -> Any:
        seen_by_middleware.append((event, payload))
        return await call_next()

    @socket.on("explode")
    async def explode(conn: Any) -> None:
        raise RuntimeError("a bug in the handler")

    async with TestClient(socket) as client:
        conn = await client.connect()
        # The size check comes first: an oversize message is never parsed.
        await conn.send_raw('{"event": "echo", "payload": {"echo": "' + "x" * 70_000 + '"}}')
        assert (await conn.receive("__error__"))["code"] == "PAYLOAD_TOO_LARGE"
        # Then the JSON parse.
        await conn.send_raw("{not json")
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        assert seen_by_middleware == []
        # Middleware runs before pydantic validation, which still refuses.
        await conn.send("echo", {"echo": 42})
        assert (await conn.receive("__error__"))["code"] == "VALIDATION_ERROR"
        assert seen_by_middleware == [("echo", {"echo": 42})]
        # A handler's exception is a HANDLER_ERROR, and the connection goes on.
        await conn.send("explode", {})
        assert (await conn.receive("__error__"))["code"] == "HANDLER_ERROR"
        await conn.send("echo", {"echo": "still here"})
        assert (await conn.receive("echo_response"))["echo"] == "still here"
        assert not conn.closed
