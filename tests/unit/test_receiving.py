"""The shared client inbox: concurrent readers, closing, accounting."""

from __future__ import annotations

import asyncio

import pytest

from socketspec.errors import ConnectionClosedError
from socketspec.receiving import Inbox


def event_is(name: str):  # type: ignore[no-untyped-def]
    return lambda message: message.get("event") == name


async def test_concurrent_readers_each_get_their_own_message() -> None:
    inbox = Inbox()
    ticks = asyncio.ensure_future(inbox.take(event_is("tick"), 1, "tick"))
    acks = asyncio.ensure_future(inbox.take(event_is("ack"), 1, "ack"))
    await asyncio.sleep(0)
    inbox.put({"event": "ack", "n": 1})
    inbox.put({"event": "tick", "n": 1})
    assert (await acks)["n"] == 1
    assert (await ticks)["n"] == 1
    # a message taken by nobody yet stays for a later reader, in order
    inbox.put({"event": "tick", "n": 2})
    inbox.put({"event": "tick", "n": 3})
    assert (await inbox.take(event_is("tick"), 1, "tick"))["n"] == 2
    assert (await inbox.take(event_is("tick"), 1, "tick"))["n"] == 3


async def test_a_reader_waiting_when_a_skipped_message_is_parked_still_sees_it() -> None:
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.take(event_is("tick"), 1, "tick"))
    await asyncio.sleep(0)
    inbox.put({"event": "tick", "n": 1})
    inbox.put({"event": "other"})
    assert (await waiting)["n"] == 1
    assert inbox.pending() == [{"event": "other"}]


async def test_timeout_names_what_was_awaited() -> None:
    with pytest.raises(TimeoutError, match="'pong'"):
        await Inbox().take(event_is("pong"), 0.05, "'pong'")


async def test_closed_and_nothing_matching_raises_with_the_close_code() -> None:
    inbox = Inbox()
    inbox.put({"event": "last"})
    inbox.close(4008, "slow_consumer")
    inbox.close(1000, "later")  # the first close wins
    assert (await inbox.take(event_is("last"), 1, "last")) == {"event": "last"}
    with pytest.raises(ConnectionClosedError) as raised:
        await inbox.take(event_is("more"), 1, "more")
    assert raised.value.code == 4008
    assert raised.value.reason == "slow_consumer"


async def test_a_close_wakes_a_waiting_reader() -> None:
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.take(event_is("x"), 5, "x"))
    await asyncio.sleep(0)
    inbox.close(1001, "server_shutdown")
    with pytest.raises(ConnectionClosedError):
        await asyncio.wait_for(waiting, 1)


async def test_unread_bytes_follow_what_is_taken() -> None:
    inbox = Inbox()
    inbox.put({"event": "a"}, 10)
    inbox.put({"event": "b"}, 5)
    assert inbox.unread_bytes == 15
    await inbox.take(event_is("b"), 1, "b")
    assert inbox.unread_bytes == 10
    assert inbox.get_nowait() == {"event": "a"}
    assert inbox.unread_bytes == 0
    assert inbox.empty()
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()
