"""The outbound queue of one connection, sans-I/O: what the transport may not have yet.

Owns the split of a connection's unsent bytes between the asyncio transport and
the connection itself. The transport is handed frames only while it has not
paused writing (its buffer is under the high-water mark; it pauses past it and
resumes at the low one); the rest waits here, in order. Keeping the transport's
share small is what lets a close frame overtake a flood: when a slow reader's
unsent bytes pass ``max_outbound``, this queue is dropped (counted, never sent)
and the 4008 close frame is written right after the at most high-water bytes the
transport already holds, instead of behind a megabyte that an abort would throw
away together with it. Does not own the transport, the per-turn write batching
or the close itself (``websocket`` and ``protocol`` do).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

# What the transport may buffer before it pauses writing, at most (and resumes under
# a quarter of it): enough for a burst to go out in one write, small enough that a close
# frame behind it reaches even a reader with a tiny receive buffer.
TRANSPORT_HIGH_WATER = 64 * 1024
# Unsent bytes the kernel may hold per connection (TCP_NOTSENT_LOWAT): the rest waits in
# this queue, where a slow consumer's backlog can be dropped. Bytes in flight are not
# limited by it, so throughput over long links is unaffected.
KERNEL_UNSENT_LIMIT = 128 * 1024


def water_marks(max_outbound: int) -> tuple[int, int]:
    """The transport's (high, low) write-buffer limits for a connection bound by
    ``max_outbound``: the transport's share is at most a quarter of it."""
    high = max(1, min(TRANSPORT_HIGH_WATER, max_outbound // 4))
    return high, high // 4


@dataclass(frozen=True, slots=True)
class Dropped:
    """What an overflow threw away."""

    frames: int
    size: int


class OutboundQueue:
    """Frames waiting for the transport to resume writing, with the bytes they hold.

    While the transport writes (``paused`` is False and nothing waits), frames go
    straight to it and this queue costs nothing. ``take`` hands back at most
    ``chunk`` bytes at a time (at least one frame), so that the transport is fed
    in pieces and can pause again between them.
    """

    __slots__ = ("_frames", "chunk", "paused", "queued_bytes")

    def __init__(self, chunk: int) -> None:
        self.chunk = max(1, chunk)
        self.paused = False
        self.queued_bytes = 0
        # A deque only while frames wait, released once they are all taken: an empty deque
        # costs 600 bytes, which the many connections that never wait should not pay.
        self._frames: deque[bytes] | None = None

    def __len__(self) -> int:
        return len(self._frames) if self._frames is not None else 0

    @property
    def idle(self) -> bool:
        """Nothing waits and the transport writes: frames may go to it directly."""
        return not self.paused and not self._frames

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def push(self, frames: Iterable[bytes]) -> None:
        """Queue frames behind those already waiting."""
        queue = self._frames
        if queue is None:
            queue = self._frames = deque()
        for frame in frames:
            queue.append(frame)
            self.queued_bytes += len(frame)

    def over(self, limit: int) -> bool:
        """More than ``limit`` bytes wait here (the transport's own share, bounded by its
        high-water mark, is not counted: it is on its way)."""
        return self.queued_bytes > limit

    def take(self) -> list[bytes]:
        """The next frames to hand to the transport: none while it is paused, else the
        oldest ones up to ``chunk`` bytes (at least one frame)."""
        queue = self._frames
        if self.paused or not queue:
            return []
        taken: list[bytes] = []
        size = 0
        while queue and (not taken or size + len(queue[0]) <= self.chunk):
            frame = queue.popleft()
            taken.append(frame)
            size += len(frame)
        self.queued_bytes -= size
        if not queue:
            self._frames = None
        return taken

    def drop(self) -> Dropped:
        """Throw away every waiting frame (the overflow policy); returns what was dropped."""
        dropped = Dropped(len(self), self.queued_bytes)
        self._frames = None
        self.queued_bytes = 0
        return dropped
