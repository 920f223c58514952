"""Asks to peer shards and their replies: a reference per peer with ``tell`` and ``ask``.

Owns the correlation of a request sent over a link with the ``Reply`` that answers it:
request ids (one counter per shard instance, so ids are per asker), the future each
ask waits on, the optional callback that runs as the reply is read (before any later
message on the same link), the deadline (``ASK_TIMEOUT``), and failing every ask
pending on a peer when that peer goes down (``RoomUnavailableError``: the client may
retry). ``PeerRef`` is what callers hold: ``tell`` sends without an answer, ``ask``
sends a message built around a fresh request id and waits for its reply. Does not own
the links (anything with ``send(peer, message)``) nor what the messages mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from socketspec.cluster.codec import LinkMessage
from socketspec.errors import ErrorCode, EventError

ASK_TIMEOUT = 5.0

OnReply = Callable[[Any], None]


class RoomUnavailableError(EventError):
    """The room's home shard is down or did not answer; the client may retry."""

    code = ErrorCode.HANDLER_ERROR


def unavailable(reason: str) -> RoomUnavailableError:
    return RoomUnavailableError(reason, details={"retry": True})


class Sender(Protocol):
    def send(self, peer: int, message: LinkMessage) -> bool: ...


class Asks:
    """The asks out to peers, by request id; each entry removed by whoever ends it."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[asyncio.Future[Any], int, OnReply | None]] = {}
        self._next_request = 0

    def __len__(self) -> int:
        return len(self._pending)

    def open(self, peer: int, on_reply: OnReply | None = None) -> tuple[int, asyncio.Future[Any]]:
        """A request id and the future its Reply from ``peer`` completes (failed with
        RoomUnavailableError if the peer goes down first). The caller ``forget``s it."""
        self._next_request += 1
        request = self._next_request
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request] = (future, peer, on_reply)
        return request, future

    def forget(self, request: int) -> None:
        self._pending.pop(request, None)

    def answered(self, request: int, value: Any) -> None:
        """A Reply arrived: run its callback, complete its future (a late or unknown reply
        is dropped)."""
        pending = self._pending.pop(request, None)
        if pending is None:
            return
        future, _, on_reply = pending
        if on_reply is not None:
            on_reply(value)
        if not future.done():
            future.set_result(value)

    def peer_down(self, peer: int) -> None:
        """Fail every ask pending on ``peer``."""
        for request, (future, target, _) in list(self._pending.items()):
            if target == peer and not future.done():
                future.set_exception(unavailable("room service temporarily unavailable; retry"))
                del self._pending[request]

    def ref(self, links: Sender, peer: int) -> PeerRef:
        return PeerRef(self, links, peer)


class PeerRef:
    """One peer shard as a caller sees it: tell it something, or ask and await the reply."""

    __slots__ = ("_asks", "_links", "peer")

    def __init__(self, asks: Asks, links: Sender, peer: int) -> None:
        self._asks = asks
        self._links = links
        self.peer = peer

    def tell(self, message: LinkMessage) -> bool:
        """Send without an answer; False if the peer's link is down."""
        return self._links.send(self.peer, message)

    async def ask(
        self, build: Callable[[int], LinkMessage], on_reply: OnReply | None = None
    ) -> Any:
        """Send ``build(request)`` and await its reply's value. Raises RoomUnavailableError
        if the peer is down, goes down, or does not answer within ASK_TIMEOUT."""
        asks = self._asks
        request, future = asks.open(self.peer, on_reply)
        if not self._links.send(self.peer, build(request)):
            asks.forget(request)
            raise unavailable("room service temporarily unavailable; retry")
        try:
            return await asyncio.wait_for(future, ASK_TIMEOUT)
        except TimeoutError:
            asks.forget(request)
            raise unavailable("room service did not answer; retry") from None
        except asyncio.CancelledError:
            # The asker went away (its connection closed). A reply with work to do (a join
            # to undo) must still find its entry; it is removed when the reply comes or the
            # peer goes down.
            if on_reply is None:
                asks.forget(request)
            raise
