"""Lifecycle hooks: order, sync and async, failure isolation."""

from __future__ import annotations

import logging

import pytest

from socketspec.hooks import HOOK_NAMES, Hooks


def test_hook_names() -> None:
    assert set(HOOK_NAMES) == {
        "on_connect",
        "on_disconnect",
        "on_error",
        "on_room_join",
        "on_room_leave",
    }


async def test_hooks_run_in_registration_order_sync_and_async() -> None:
    hooks = Hooks()
    seen: list[tuple[str, object, object]] = []

    def first(conn: object, reason: object) -> None:
        seen.append(("first", conn, reason))

    async def second(conn: object, reason: object) -> None:
        seen.append(("second", conn, reason))

    def third(conn: object, reason: object) -> None:
        seen.append(("third", conn, reason))

    for hook in (first, second, third):
        hooks.add("on_disconnect", hook)
    await hooks.run("on_disconnect", "conn", "bye")
    assert seen == [("first", "conn", "bye"), ("second", "conn", "bye"), ("third", "conn", "bye")]
    assert hooks.get("on_disconnect") == [first, second, third]


async def test_only_the_named_hooks_run() -> None:
    hooks = Hooks()
    seen: list[str] = []
    hooks.add("on_connect", lambda c: seen.append("connect"))
    hooks.add("on_room_join", lambda c, r: seen.append("join"))
    await hooks.run("on_connect", object())
    assert seen == ["connect"]


async def test_no_hooks_is_fine() -> None:
    await Hooks().run("on_error", object(), RuntimeError())


@pytest.mark.parametrize("failing_is_async", [False, True])
async def test_raising_hook_is_logged_and_the_rest_still_run(
    caplog: pytest.LogCaptureFixture, failing_is_async: bool
) -> None:
    hooks = Hooks()
    seen: list[str] = []

    def sync_fail(conn: object) -> None:
        raise RuntimeError("hook broke")

    async def async_fail(conn: object) -> None:
        raise RuntimeError("hook broke")

    def after(conn: object) -> None:
        seen.append("after")

    async def later(conn: object) -> None:
        seen.append("later")

    hooks.add("on_connect", lambda c: seen.append("before"))
    hooks.add("on_connect", async_fail if failing_is_async else sync_fail)
    hooks.add("on_connect", after)
    hooks.add("on_connect", later)
    with caplog.at_level(logging.ERROR, logger="socketspec.hooks"):
        await hooks.run("on_connect", object())
    assert seen == ["before", "after", "later"]
    failures = [r for r in caplog.records if r.name == "socketspec.hooks"]
    assert len(failures) == 1
    record = failures[0]
    assert record.levelno == logging.ERROR
    assert "on_connect" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


async def test_include_appends_after_own_hooks() -> None:
    mine = Hooks()
    other = Hooks()
    seen: list[str] = []
    mine.add("on_room_leave", lambda c, r: seen.append("mine"))
    other.add("on_room_leave", lambda c, r: seen.append("other"))
    mine.include(other)
    await mine.run("on_room_leave", object(), "room")
    assert seen == ["mine", "other"]
