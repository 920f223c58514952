"""The first tutorial as its reader runs it: block 1 saved as ``main.py``, adapter lines and
all, and started with ``uvicorn main:app --reload`` (step 2). The client is the websockets
library sending the envelope of step 3; the docs page of step 2 is read over HTTP. Block 2
is a signature without a body, for reading; block 3, the page's own in-process test, is
collected in tests/unit/reference.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from asgikit import UvicornProcess, recv
from reference_pages import block
from refkit import client, emit, get

PAGE = "tutorial-first-event"


@pytest.fixture
def served(tmp_path: Path, spawn_uvicorn: Callable[..., UvicornProcess]) -> UvicornProcess:
    (tmp_path / "main.py").write_text(block(PAGE, 1))
    server = spawn_uvicorn(["main:app", "--reload", "--reload-dir", str(tmp_path)], tmp_path)
    server.wait_ready()
    return server


async def test_the_echo_comes_back_from_the_sender(served: UvicornProcess) -> None:
    async with client(served.ws + "/ws") as (ws, conn_id):
        await emit(ws, "echo", {"echo": "hello world"})
        assert await recv(ws) == {
            "event": "echo_response",
            "payload": {"echo": "hello world", "from": conn_id},
        }


async def test_an_invalid_payload_is_a_validation_error_and_the_handler_never_runs(
    served: UvicornProcess,
) -> None:
    async with client(served.ws + "/ws") as (ws, _):
        for invalid in ({"echo": ["not", "a", "string"]}, {}):
            await emit(ws, "echo", invalid)
            error = await recv(ws)
            assert error["event"] == "__error__"
            assert error["payload"]["code"] == "VALIDATION_ERROR"
        # the next message is the answer to a valid echo: no echo_response came before it
        await emit(ws, "echo", {"echo": "valid"})
        assert (await recv(ws))["payload"]["echo"] == "valid"


async def test_the_docs_ui_has_the_echo_card_under_demo(served: UvicornProcess) -> None:
    status, page = await asyncio.to_thread(get, served.http + "/socket-docs")
    assert status == 200 and b"<html" in page.lower()
    status, body = await asyncio.to_thread(get, served.http + "/socket-docs/schema")
    assert status == 200
    (echo,) = [event for event in json.loads(body)["events"] if event["name"] == "echo"]
    assert echo["tags"] == ["demo"]
    assert echo["description"] == "Echo a message back to the sender."
    assert echo["payload"]["properties"]["echo"]["type"] == "string"
    assert echo["payload"]["required"] == ["echo"]


def test_a_second_echo_handler_stops_the_server_at_startup(
    tmp_path: Path, spawn_uvicorn: Callable[..., UvicornProcess]
) -> None:
    # "At startup (before the first connection), SocketSpec validates that no two handlers
    # share the same event name."
    second = (
        '\n@socket.on("echo")\n'
        "async def another_echo(conn, payload: EchoPayload) -> None:\n"
        "    pass\n"
    )
    (tmp_path / "main.py").write_text(block(PAGE, 1) + second)
    server = spawn_uvicorn(["main:app"], tmp_path)
    assert server.process.wait(30) == 3  # uvicorn's startup failure
    assert "DuplicateEventError" in server.output()
