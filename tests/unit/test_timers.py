"""socketspec.timers: one wheel of deadlines per loop, never early, at most a slot late."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from socketspec.timers import RESOLUTION, TimerWheel, wheel_for


def test_callbacks_run_at_their_deadline_in_order_never_early() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[tuple[str, float]] = []
        start = loop.time()
        for name, delay in (("late", 0.08), ("early", 0.02), ("middle", 0.05)):
            when = start + delay
            wheel.schedule(when, lambda name=name, when=when: fired.append((name, when)))
        await asyncio.sleep(0.15)
        assert [name for name, _ in fired] == ["early", "middle", "late"]
        assert len(wheel) == 0

    asyncio.run(main())


def test_a_deadline_fires_at_or_after_its_time() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        seen: list[float] = []
        when = loop.time() + 0.03
        wheel.schedule(when, lambda: seen.append(loop.time()))
        await asyncio.sleep(0.1)
        assert len(seen) == 1
        assert seen[0] >= when
        assert seen[0] < when + 0.05 + RESOLUTION  # a generous bound for a loaded machine

    asyncio.run(main())


def test_cancel_takes_back_a_deadline_and_an_empty_wheel_arms_no_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[str] = []

        def keep() -> None:
            fired.append("kept")

        def drop() -> None:
            fired.append("dropped")

        slot = wheel.schedule(loop.time() + 0.02, drop)
        wheel.schedule(loop.time() + 0.02, keep)
        wheel.cancel(slot, drop)
        wheel.cancel(slot, drop)  # twice: nothing
        await asyncio.sleep(0.08)
        assert fired == ["kept"]
        lone = wheel.schedule(loop.time() + 0.02, drop)
        wheel.cancel(lone, drop)
        await asyncio.sleep(0.06)
        assert fired == ["kept"]
        assert len(wheel) == 0

    asyncio.run(main())


def test_a_callback_that_cancels_a_later_one_of_the_same_slot_wins() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[str] = []
        when = loop.time() + 0.02
        slot = 0

        def second() -> None:
            fired.append("second")

        def first() -> None:
            fired.append("first")
            wheel.cancel(slot, second)

        slot = wheel.schedule(when, first)
        wheel.schedule(when, second)
        await asyncio.sleep(0.08)
        assert fired == ["first"]

    asyncio.run(main())


def test_a_callback_may_file_a_new_deadline_even_one_already_due() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        count = 0

        def again() -> None:
            nonlocal count
            count += 1
            if count < 3:
                wheel.schedule(loop.time(), again)  # due at once: the next turn, not this one

        wheel.schedule(loop.time() + 0.01, again)
        await asyncio.sleep(0.1)
        assert count == 3

    asyncio.run(main())


def test_an_earlier_deadline_rearms_the_loop_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = TimerWheel(loop)
        fired: list[str] = []
        wheel.schedule(loop.time() + 5, lambda: fired.append("much later"))
        wheel.schedule(loop.time() + 0.02, lambda: fired.append("soon"))
        await asyncio.sleep(0.08)
        assert fired == ["soon"]
        assert len(wheel) == 1

    asyncio.run(main())


def test_a_raising_callback_is_reported_and_the_others_run() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        wheel = TimerWheel(loop)
        fired: list[str] = []

        def boom() -> None:
            raise RuntimeError("boom")

        when = loop.time() + 0.02
        wheel.schedule(when, boom)
        wheel.schedule(when, lambda: fired.append("after"))
        await asyncio.sleep(0.08)
        assert fired == ["after"]
        assert isinstance(reported[0]["exception"], RuntimeError)

    asyncio.run(main())


def test_one_wheel_per_loop_gone_with_its_loop() -> None:
    async def main() -> weakref.ref[TimerWheel]:
        loop = asyncio.get_running_loop()
        assert wheel_for(loop) is wheel_for(loop)
        return weakref.ref(wheel_for(loop))

    first = asyncio.run(main())
    second = asyncio.run(main())
    assert first is not second
    gc.collect()
    assert first() is None and second() is None  # the wheel does not keep its loop alive
