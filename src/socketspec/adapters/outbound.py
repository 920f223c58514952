"""The ASGI connection's outbound queue, sans-I/O: messages waiting for the server's ``send``.

An ASGI ``send`` may block (uvicorn's waits while the socket's write buffer is full), and
the application's ``Transport.write`` must not: the connection queues messages here and
one writer task hands them to the server in order. The queue is bounded in bytes (the
high-water mark, ``max_bytes``); its overflow policy is the cluster's ``--max-outbound``
one: a client that stopped reading is not waited for, its backlog is discarded and the
connection is closed with 4008. There is no low-water mark because nothing pauses on this
queue: a broadcast cannot wait for its slowest member. Does not own the writer task or
the close itself (``asgi``).
"""

from __future__ import annotations

from collections import deque


class OutboundQueue:
    """Messages in order, at most ``max_bytes`` of them waiting."""

    __slots__ = ("_items", "max_bytes", "overflowed", "pending_bytes")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._items: deque[tuple[str, int]] = deque()
        self.pending_bytes = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._items)

    def push(self, message: str, size: int) -> bool:
        """Queue ``message`` (``size`` bytes on the wire). False when it would pass the bound:
        the queue is then emptied and refuses everything after (the caller closes 4008)."""
        if self.overflowed:
            return False
        if self.pending_bytes + size > self.max_bytes:
            self.overflowed = True
            self._items.clear()
            self.pending_bytes = 0
            return False
        self._items.append((message, size))
        self.pending_bytes += size
        return True

    def pop(self) -> tuple[str, int] | None:
        """The oldest message and its size, or None when nothing waits."""
        if not self._items:
            return None
        item = self._items.popleft()
        self.pending_bytes -= item[1]
        return item
