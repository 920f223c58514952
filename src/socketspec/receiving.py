"""The client end of a connection, as both clients see it: received messages and the
receive / call API over them.

Owns ``Inbox`` (every message received and not yet taken, in arrival order; each
reader takes the first one it wants, so concurrent readers, say a ``call`` and a
``receive``, never hide a message from each other) and ``Receiver``, the methods
``receive``, ``receive_message``, ``receive_broadcast``, ``receive_error`` and
``call`` that the in-process ``TestConnection`` and the socket ``Client`` share.
Does not own how messages arrive or how they are sent.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from socketspec.errors import ConnectionClosedError, ErrorReply, SystemEvent
from socketspec.types import AckId, EventName, PayloadDict, RoomName

DEFAULT_RECEIVE_TIMEOUT = 5.0
# Housekeeping a client library handles itself; receive() without an event skips it.
HOUSEKEEPING_EVENTS = frozenset({SystemEvent.CONNECT, SystemEvent.PING, SystemEvent.RECOVERY})
# What a client keeps to itself and never puts in its inbox: a fresh recovery token.
SILENT_EVENTS = frozenset({SystemEvent.RECOVERY})
# What answers a message that carried an ack.
_REPLY_EVENTS = (SystemEvent.ACK, SystemEvent.ERROR)


class Inbox:
    """Received messages; unbounded by itself (its owner bounds what it puts in)."""

    def __init__(self) -> None:
        self._messages: deque[tuple[PayloadDict, int]] = deque()
        # Called whenever a message is taken (a writer waiting for room may go on).
        self.on_take: Callable[[], None] | None = None
        self._arrived = asyncio.Event()
        self._closed = asyncio.Event()
        self.unread_bytes = 0
        self.close_code: int | None = None
        self.close_reason = ""

    def put(self, message: PayloadDict, size: int = 0) -> None:
        self._messages.append((message, size))
        self.unread_bytes += size
        self._arrived.set()

    def put_first(self, message: PayloadDict) -> None:
        self._messages.appendleft((message, 0))
        self._arrived.set()

    def close(self, code: int | None, reason: str) -> None:
        if not self._closed.is_set():
            self.close_code = code
            self.close_reason = reason
            self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def pending(self) -> list[PayloadDict]:
        """Messages received and not taken, without waiting."""
        return [message for message, _ in self._messages]

    def empty(self) -> bool:
        return not self._messages

    def get_nowait(self) -> PayloadDict:
        """The oldest message (``asyncio.QueueEmpty`` when there is none)."""
        if not self._messages:
            raise asyncio.QueueEmpty
        message, size = self._messages.popleft()
        self.unread_bytes -= size
        self._taken()
        return message

    def _taken(self) -> None:
        if self.on_take is not None:
            self.on_take()

    async def take(
        self, matches: Callable[[PayloadDict], bool], timeout: float, what: str
    ) -> PayloadDict:
        """The first message that ``matches``, waiting up to ``timeout`` for one.

        Raises ``TimeoutError`` naming ``what``, or ``ConnectionClosedError`` once the
        connection is closed and nothing matching is left.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, (message, size) in enumerate(self._messages):
                if matches(message):
                    del self._messages[index]
                    self.unread_bytes -= size
                    self._taken()
                    return message
            if self.closed:
                raise ConnectionClosedError(self.close_code, self.close_reason)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {what} received within {timeout:g}s")
            self._arrived.clear()
            arrived = asyncio.ensure_future(self._arrived.wait())
            closed = asyncio.ensure_future(self._closed.wait())
            try:
                await asyncio.wait(
                    {arrived, closed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                arrived.cancel()
                closed.cancel()


class Receiver:
    """The receive side of a client connection; subclasses provide ``inbox`` and ``emit``."""

    inbox: Inbox
    _ack_prefix = "a"
    _acks = itertools.count(1)

    @abstractmethod
    async def emit(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        ack: AckId | None = None,
    ) -> None: ...

    async def receive(
        self, event: EventName | None = None, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> Any:
        """With ``event``: the payload of the next message of that event, skipping (and keeping)
        others. Without: the next whole message, housekeeping events (``__connect__``,
        ``__ping__``) skipped. Raises ``TimeoutError`` naming the event, and
        ``ConnectionClosedError`` when the connection is closed and nothing matching is left."""
        if event is None:
            return await self.inbox.take(
                lambda m: m.get("event") not in HOUSEKEEPING_EVENTS, timeout, "any message"
            )
        message = await self.inbox.take(lambda m: m.get("event") == event, timeout, repr(event))
        return message.get("payload")

    async def receive_message(
        self, event: EventName, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> PayloadDict:
        """The next whole message (envelope with ``ack``) of ``event``."""
        return await self.inbox.take(lambda m: m.get("event") == event, timeout, repr(event))

    async def receive_broadcast(
        self,
        event: EventName,
        room: RoomName | None = None,
        *,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT,
    ) -> Any:
        """A broadcast arrives like any other message; ``room`` documents which one is expected."""
        return await self.receive(event, timeout=timeout)

    async def receive_error(
        self, code: str | None = None, *, timeout: float = DEFAULT_RECEIVE_TIMEOUT
    ) -> PayloadDict:
        """The payload of the next ``__error__`` (of ``code``, when given)."""
        message = await self.inbox.take(
            lambda m: (
                m.get("event") == SystemEvent.ERROR
                and (code is None or (m.get("payload") or {}).get("code") == code)
            ),
            timeout,
            f"__error__ {code or ''}".strip(),
        )
        payload: PayloadDict = message.get("payload") or {}
        return payload

    async def wait_closed(self, timeout: float = DEFAULT_RECEIVE_TIMEOUT) -> int | None:
        """Wait until the connection is closed (normally by the server); returns the close
        code."""
        try:
            await asyncio.wait_for(self.inbox.wait_closed(), timeout)
        except TimeoutError:
            raise TimeoutError(f"connection not closed within {timeout:g}s") from None
        return self.inbox.close_code

    async def call(
        self,
        event: EventName,
        payload: PayloadDict | BaseModel | None = None,
        *,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT,
    ) -> Any:
        """Send with a fresh ack id and return the ``__ack__`` payload; raises ``ErrorReply``
        when an ``__error__`` carrying that ack comes back instead."""
        ack = f"{self._ack_prefix}{next(self._acks)}"
        await self.emit(event, payload, ack=ack)
        message = await self.inbox.take(
            lambda m: m.get("ack") == ack and m.get("event") in _REPLY_EVENTS,
            timeout,
            f"the ack of {event!r}",
        )
        if message["event"] == SystemEvent.ERROR:
            raise ErrorReply(message.get("payload") or {})
        return message.get("payload")
