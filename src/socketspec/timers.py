"""Deadlines of many connections on one event loop: one timer wheel, one loop timer.

Owns ``TimerWheel`` and ``wheel_for``. Every live connection has one deadline at a time
(its session clock's next one: a heartbeat, an idle or a token limit). A loop timer
handle per connection costs about 600 bytes (the handle, its callback, its context),
which 100,000 idle connections would pay as 60 MB. The wheel files each deadline in a
slot of ``RESOLUTION`` seconds (a dict of callbacks per slot, a heap of the slots in
use), keeps one loop timer armed for the earliest slot, and when it fires calls what is
due: never early, at most ``RESOLUTION`` late, callbacks of one slot in the order they
were filed. A callback that raises is reported to the loop and the others still run.

Does not own what the callbacks do, nor when they want to run.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import weakref
from collections.abc import Callable

RESOLUTION = 0.01  # seconds per slot

_WHEELS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel_for(loop: asyncio.AbstractEventLoop) -> TimerWheel:
    """The loop's wheel (made at the first use)."""
    wheel = _WHEELS.get(loop)
    if wheel is None:
        wheel = _WHEELS[loop] = TimerWheel(loop)
    return wheel


class TimerWheel:
    """Callbacks due at loop times, filed in slots of ``RESOLUTION`` seconds."""

    __slots__ = ("__weakref__", "_armed", "_handle", "_heap", "_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the wheel is the loop's (a value of ``_WHEELS``, keyed by the loop), and
        # must not keep its loop alive.
        self._loop = weakref.ref(loop)
        self._slots: dict[int, dict[Callable[[], object], None]] = {}
        self._heap: list[int] = []  # slot numbers; a cancelled slot's stays until popped
        self._handle: asyncio.TimerHandle | None = None
        self._armed = -1  # the slot the loop timer is armed for

    def __len__(self) -> int:
        """Callbacks filed."""
        return sum(len(callbacks) for callbacks in self._slots.values())

    def schedule(self, when: float, callback: Callable[[], object]) -> int:
        """File ``callback`` to run at loop time ``when`` (or up to RESOLUTION later);
        returns its slot, which ``cancel`` takes."""
        slot = math.ceil(when / RESOLUTION)
        callbacks = self._slots.get(slot)
        if callbacks is None:
            callbacks = self._slots[slot] = {}
            heapq.heappush(self._heap, slot)
        callbacks[callback] = None
        if self._handle is None or slot < self._armed:
            self._arm()
        return slot

    def cancel(self, slot: int, callback: Callable[[], object]) -> None:
        """Take back what ``schedule`` filed in ``slot`` (nothing if it ran already)."""
        callbacks = self._slots.get(slot)
        if callbacks is None:
            return
        callbacks.pop(callback, None)
        if not callbacks:
            del self._slots[slot]  # the heap's entry is skipped when it comes up

    def _arm(self) -> None:
        heap = self._heap
        while heap and heap[0] not in self._slots:
            heapq.heappop(heap)
        if self._handle is not None:
            if heap and heap[0] == self._armed:
                return
            self._handle.cancel()
            self._handle = None
        loop = self._loop()
        if heap and loop is not None:
            self._armed = heap[0]
            self._handle = loop.call_at(self._armed * RESOLUTION, self._fire)

    def _fire(self) -> None:
        self._handle = None
        loop = self._loop()
        if loop is None:
            return
        slots = self._slots
        heap = self._heap
        last = math.floor(loop.time() / RESOLUTION)
        ready: list[int] = []
        while heap and heap[0] <= last:
            slot = heapq.heappop(heap)
            if slot in slots:
                ready.append(slot)
        for slot in ready:
            callbacks = slots.get(slot)
            if callbacks is None:
                continue
            for callback in list(callbacks):
                if callbacks.pop(callback, _GONE) is _GONE:
                    continue  # cancelled by a callback that ran before it
                try:
                    callback()
                except Exception as exc:  # one failing deadline never stops the others
                    loop.call_exception_handler(
                        {"message": f"timer callback {callback!r} raised", "exception": exc}
                    )
            if slots.get(slot) is callbacks:
                if callbacks:
                    heapq.heappush(heap, slot)  # filed while it ran: due on the next turn
                else:
                    del slots[slot]
        self._arm()


_GONE = object()
