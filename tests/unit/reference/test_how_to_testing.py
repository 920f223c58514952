"""The testing how-to's code, run as written: its tests are collected here.

The how-to's tests talk to events it never defines: ``join_room`` with a
confirmation and ``send_message`` broadcasting ``new_message`` to ``chat:{room_id}``
(the rooms tutorial's handlers, whose blocks are reused unchanged), an event
that answers nothing (``fire_and_forget``) and one answered by
``expected_response`` (``my_event``). The prelude adds them to the how-to's app.
Its conftest block imports the app from ``myapp.main``, which is made to stand
for that module while the block runs; its fixtures and the test that uses them
are then collected here like the others.

One test is not collected as written: ``test_auth_required`` connects without a
token and asserts nothing, trusting that "TestClient surfaces auth errors". It
does, by raising; the test below runs it and reads what was raised.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from pagecode import importable_as, run_blocks
from reference_pages import HOW_TO_TESTING_PRESUMED, block

from socketspec.errors import ConnectionAuthError, ConnectRejected

PAGE = "how-to-testing"

# The page's JWT secret is short; PyJWT warns about that, and the page is run as written.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

page = run_blocks(
    PAGE,
    {
        1: block(PAGE, 1),
        "rooms tutorial, joining": block("tutorial-rooms", 2),
        "rooms tutorial, broadcasting": block("tutorial-rooms", 4),
        "presumed handlers": HOW_TO_TESTING_PRESUMED,
    },
)
run_blocks(PAGE, {n: block(PAGE, n) for n in (2, 3, 4, 5)}, page)

# The page's tests, collected as written.
test_ping_pong = page["test_ping_pong"]
test_two_clients = page["test_two_clients"]
test_auth_success = page["test_auth_success"]
test_room_join_hook = page["test_room_join_hook"]
test_no_response_expected = page["test_no_response_expected"]

# The conftest pattern: its own module, importing the app from where the page says.
conftest_pattern: dict[str, Any] = {"__name__": "page_conftest"}
with importable_as("myapp.main", socket=page["socket"]):
    run_blocks(PAGE, {6: block(PAGE, 6)}, conftest_pattern)
client = conftest_pattern["client"]
conn = conftest_pattern["conn"]
test_something = run_blocks(PAGE, {7: block(PAGE, 7)})["test_something"]


async def test_auth_required_surfaces_the_refusal_as_an_error_to_read() -> None:
    with pytest.raises(ConnectRejected) as refused:
        await page["test_auth_required"]()
    assert isinstance(refused.value, ConnectionAuthError)
    assert isinstance(refused.value, RuntimeError)
    assert refused.value.code == 4001
    assert refused.value.reason == "missing token"
    assert refused.value.error is not None
    assert refused.value.error["code"] == "AUTH_ERROR"
    assert page["socket_with_auth"].connections == []


async def test_the_hook_saw_the_connection_and_the_room() -> None:
    page["joined_rooms"].clear()
    async with page["TestClient"](page["socket"]) as testing_client:
        joiner = await testing_client.connect()
        await joiner.send("join_room", {"room_id": "general"})
        assert await joiner.receive("joined") == {"room": "chat:general"}
    assert page["joined_rooms"] == [(joiner.id, "chat:general")]


def test_the_conftest_block_left_no_stand_in_module_behind() -> None:
    assert "myapp" not in sys.modules
    assert "myapp.main" not in sys.modules
