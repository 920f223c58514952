"""Handler concurrency: ``ordered=True`` chains, concurrent handlers, and the in-flight bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from socketspec import Connection, SocketApp, runtime
from socketspec.testing import TestClient

OK = 2.0
QUIET = 0.15


async def until(condition: Callable[[], bool], timeout: float = OK) -> None:
    """Yield to the loop until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Give every ready task many chances to run."""
    for _ in range(20):
        await asyncio.sleep(0)


class Gates:
    """One asyncio.Event per message number, created on demand."""

    def __init__(self) -> None:
        self._events: dict[int, asyncio.Event] = {}
        self._all_open = False

    def __getitem__(self, n: int) -> asyncio.Event:
        if n not in self._events:
            self._events[n] = asyncio.Event()
            if self._all_open:
                self._events[n].set()
        return self._events[n]

    def open_all(self) -> None:
        """Open every gate, including those not asked for yet."""
        self._all_open = True
        for event in self._events.values():
            event.set()


def gated_app(*, ordered: bool) -> tuple[SocketApp, list[tuple[str, int]], Gates]:
    app = SocketApp()
    log: list[tuple[str, int]] = []
    gates = Gates()

    @app.on("work", ordered=ordered)
    async def work(conn: Connection, payload: dict[str, Any]) -> None:
        n = payload["n"]
        log.append(("start", n))
        await gates[n].wait()
        await asyncio.sleep(0.002)  # a real await after the gate, where others could interleave
        log.append(("end", n))

    @app.on("quick")
    async def quick(conn: Connection, payload: dict[str, Any]) -> str:
        log.append(("quick", payload["n"]))
        return "done"

    return app, log, gates


# -- ordered=True -------------------------------------------------------------------------------


async def test_ordered_handler_runs_messages_one_at_a_time_in_arrival_order() -> None:
    app, log, gates = gated_app(ordered=True)
    async with TestClient(app).connect() as conn:
        for n in range(1, 6):
            await conn.emit("work", {"n": n})
        await until(lambda: ("start", 1) in log)
        for n in range(5, 1, -1):  # release the later ones first: order must still hold
            gates[n].set()
        await settle()
        assert log == [("start", 1)]
        gates[1].set()
        await conn.wait_idle()
        expected = [(stage, n) for n in range(1, 6) for stage in ("start", "end")]
        assert log == expected


async def test_ordered_handler_keeps_going_after_a_failing_message() -> None:
    app = SocketApp()
    log: list[int] = []

    @app.on("step", ordered=True)
    async def step(conn: Connection, payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.002)
        log.append(payload["n"])
        if payload["n"] == 2:
            raise RuntimeError("step 2 failed")

    async with TestClient(app).connect() as conn:
        for n in range(1, 5):
            await conn.emit("step", {"n": n})
        await conn.receive_error("HANDLER_ERROR", timeout=OK)
        await conn.wait_idle()
        assert log == [1, 2, 3, 4]


async def test_ordered_handler_does_not_block_other_events() -> None:
    app, log, gates = gated_app(ordered=True)
    async with TestClient(app).connect() as conn:
        await conn.emit("work", {"n": 1})
        await conn.emit("work", {"n": 2})
        await until(lambda: ("start", 1) in log)
        assert await conn.call("quick", {"n": 99}, timeout=OK) == "done"
        assert ("end", 1) not in log
        assert ("start", 2) not in log
        gates.open_all()
        await conn.wait_idle()
        assert log.index(("quick", 99)) < log.index(("end", 1)) < log.index(("start", 2))


async def test_ordering_is_per_connection() -> None:
    app, log, gates = gated_app(ordered=True)
    async with TestClient(app) as client:
        first = await client.connect()
        second = await client.connect()
        await first.emit("work", {"n": 1})
        await second.emit("work", {"n": 2})
        await until(lambda: ("start", 1) in log and ("start", 2) in log)
        gates[2].set()
        await until(lambda: ("end", 2) in log)
        assert ("end", 1) not in log
        gates[1].set()
        await first.wait_idle()


# -- concurrent (the default) -------------------------------------------------------------------


async def test_unordered_handler_messages_overlap() -> None:
    app, log, gates = gated_app(ordered=False)
    async with TestClient(app).connect() as conn:
        await conn.emit("work", {"n": 1})
        await conn.emit("work", {"n": 2})
        await until(lambda: ("start", 2) in log)
        assert ("end", 1) not in log  # the second started before the first ended
        gates[2].set()
        await until(lambda: ("end", 2) in log)
        assert ("end", 1) not in log  # and it could finish first
        gates[1].set()
        await conn.wait_idle()
        assert log == [("start", 1), ("start", 2), ("end", 2), ("end", 1)]


# -- backpressure: runtime.MAX_INFLIGHT_EVENTS ---------------------------------------------------


async def test_inflight_bound_makes_the_next_message_wait_for_a_free_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "MAX_INFLIGHT_EVENTS", 2)
    app, log, gates = gated_app(ordered=False)
    async with TestClient(app) as client:
        conn = await client.connect()
        await asyncio.wait_for(conn.emit("work", {"n": 1}), OK)
        await asyncio.wait_for(conn.emit("work", {"n": 2}), OK)
        third = asyncio.create_task(conn.emit("work", {"n": 3}))
        try:
            await asyncio.sleep(QUIET)
            assert not third.done(), "a third message was admitted past the in-flight bound"
            await until(lambda: ("start", 2) in log)
            assert ("start", 3) not in log

            other = await client.connect()  # the bound is per connection
            assert await other.call("quick", {"n": 7}, timeout=OK) == "done"

            gates[1].set()
            await asyncio.wait_for(third, OK)
            await until(lambda: ("start", 3) in log)
        finally:
            gates.open_all()
            if not third.done():
                third.cancel()
        await conn.wait_idle()
        assert sorted(n for stage, n in log if stage == "end") == [1, 2, 3]


async def test_default_inflight_bound_holds() -> None:
    limit = runtime.MAX_INFLIGHT_EVENTS
    assert 0 < limit <= 1024
    app, log, gates = gated_app(ordered=False)
    async with TestClient(app).connect() as conn:
        for n in range(limit):
            await asyncio.wait_for(conn.emit("work", {"n": n}), OK)
        extra = asyncio.create_task(conn.emit("work", {"n": limit}))
        try:
            await asyncio.sleep(QUIET)
            assert not extra.done()
            assert sum(1 for stage, _ in log if stage == "start") == limit
            gates[0].set()
            await asyncio.wait_for(extra, OK)
        finally:
            gates.open_all()
            if not extra.done():
                extra.cancel()
        await conn.wait_idle()
        assert sum(1 for stage, _ in log if stage == "end") == limit + 1
