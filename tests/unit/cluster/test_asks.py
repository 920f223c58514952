"""Asks to peer shards: a reply completes its ask (its callback first), a peer that goes
down fails its asks and only its own, a peer that is down or silent raises at once or at
the deadline, and a cancelled ask with a callback keeps its entry for the reply."""

from __future__ import annotations

import asyncio

import pytest

from socketspec.cluster import asks as asks_module
from socketspec.cluster.asks import Asks, RoomUnavailableError
from socketspec.cluster.codec import ExistsRequest, Leave, LinkMessage


class Links:
    def __init__(self, down: frozenset[int] = frozenset()) -> None:
        self.down = down
        self.sent: list[tuple[int, LinkMessage]] = []

    def send(self, peer: int, message: LinkMessage) -> bool:
        if peer in self.down:
            return False
        self.sent.append((peer, message))
        return True


async def test_tell_sends_without_waiting() -> None:
    links = Links()
    assert Asks().ref(links, 2).tell(Leave("hall", "c1"))
    assert links.sent == [(2, Leave("hall", "c1"))]
    assert not Asks().ref(Links(down=frozenset({2})), 2).tell(Leave("hall", "c1"))


async def test_an_ask_gets_its_replys_value_and_the_callback_runs_first() -> None:
    links, asks = Links(), Asks()
    seen: list[object] = []
    task = asyncio.ensure_future(
        asks.ref(links, 1).ask(lambda request: ExistsRequest(request, "hall"), seen.append)
    )
    await asyncio.sleep(0)
    ((peer, message),) = links.sent
    assert peer == 1 and isinstance(message, ExistsRequest)
    asks.answered(message.request, True)
    assert seen == [True]  # as the reply is read, before the asker resumes
    assert await task is True
    assert len(asks) == 0
    asks.answered(message.request, False)  # a late duplicate is dropped


async def test_request_ids_are_fresh_per_ask() -> None:
    asks = Asks()
    first, _ = asks.open(1)
    second, _ = asks.open(1)
    assert first != second
    asks.forget(first)
    asks.forget(second)
    assert len(asks) == 0


async def test_a_peer_going_down_fails_its_asks_only() -> None:
    links, asks = Links(), Asks()
    on_one = asyncio.ensure_future(asks.ref(links, 1).ask(lambda r: ExistsRequest(r, "a")))
    on_two = asyncio.ensure_future(asks.ref(links, 2).ask(lambda r: ExistsRequest(r, "b")))
    await asyncio.sleep(0)
    asks.peer_down(1)
    with pytest.raises(RoomUnavailableError) as failed:
        await on_one
    assert failed.value.details == {"retry": True}
    assert not on_two.done()
    ((_, for_two),) = [(p, m) for p, m in links.sent if p == 2]
    assert isinstance(for_two, ExistsRequest)
    asks.answered(for_two.request, False)
    assert await on_two is False


async def test_a_peer_that_is_down_fails_the_ask_at_once() -> None:
    asks = Asks()
    with pytest.raises(RoomUnavailableError):
        await asks.ref(Links(down=frozenset({3})), 3).ask(lambda r: ExistsRequest(r, "a"))
    assert len(asks) == 0


async def test_a_silent_peer_fails_the_ask_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(asks_module, "ASK_TIMEOUT", 0.01)
    asks = Asks()
    with pytest.raises(RoomUnavailableError, match="did not answer"):
        await asks.ref(Links(), 1).ask(lambda r: ExistsRequest(r, "a"))
    assert len(asks) == 0


async def test_a_cancelled_ask_with_a_callback_still_hears_its_reply() -> None:
    links, asks = Links(), Asks()
    seen: list[object] = []
    with_callback = asyncio.ensure_future(
        asks.ref(links, 1).ask(lambda r: ExistsRequest(r, "a"), seen.append)
    )
    without = asyncio.ensure_future(asks.ref(links, 1).ask(lambda r: ExistsRequest(r, "b")))
    await asyncio.sleep(0)
    with_callback.cancel()
    without.cancel()
    await asyncio.gather(with_callback, without, return_exceptions=True)
    assert len(asks) == 1  # only the one whose reply has work to do
    first = links.sent[0][1]
    assert isinstance(first, ExistsRequest)
    asks.answered(first.request, "joined")
    assert seen == ["joined"]
    assert len(asks) == 0
