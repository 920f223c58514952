"""socketspec.eager: the first step inline, a task only for a coroutine that suspends."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from socketspec import eager

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_test", default="outside")


def test_a_coroutine_that_does_not_suspend_finishes_at_once_and_leaves_no_task() -> None:
    steps: list[str] = []

    async def handler() -> None:
        VAR.set("inside")  # the handler's own context, as in a task
        steps.append("ran")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert eager.start(loop, handler()) is None
        assert steps == ["ran"]
        assert VAR.get() == "outside"

    asyncio.run(main())


def test_a_coroutine_that_suspends_carries_on_in_a_task_with_its_context() -> None:
    async def handler(gate: asyncio.Future[int]) -> str:
        VAR.set("inside")
        value = await gate
        return f"{VAR.get()} {value}"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[int] = loop.create_future()
        task = eager.start(loop, handler(gate))
        assert task is not None and not task.done()
        gate.set_result(7)
        assert await task == "inside 7"
        assert VAR.get() == "outside"

    asyncio.run(main())


def test_a_bare_yield_and_several_suspensions_resume_in_order() -> None:
    async def handler(log: list[int]) -> int:
        for k in range(3):
            log.append(k)
            await asyncio.sleep(0)
        return len(log)

    async def main() -> None:
        log: list[int] = []
        task = eager.start(asyncio.get_running_loop(), handler(log))
        assert log == [0]  # the first step ran at once
        assert task is not None and await task == 3

    asyncio.run(main())


def test_asyncio_timeout_works_from_the_first_line() -> None:
    async def handler() -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(10)
        except TimeoutError:
            return "timed out"
        return "not timed out"

    async def main() -> None:
        task = eager.start(asyncio.get_running_loop(), handler())
        assert task is not None
        assert await asyncio.wait_for(task, 5) == "timed out"

    asyncio.run(main())


def test_a_timeout_that_does_not_expire_lets_the_coroutine_finish_inline() -> None:
    async def handler(log: list[str]) -> None:
        async with asyncio.timeout(5):  # noqa: ASYNC100 - no checkpoint, on purpose
            log.append("inside the timeout")

    async def main() -> None:
        log: list[str] = []
        assert eager.start(asyncio.get_running_loop(), handler(log)) is None
        assert log == ["inside the timeout"]

    asyncio.run(main())


def test_a_task_group_from_the_first_line_waits_for_its_children_and_cancels_on_failure() -> None:
    async def child(delay: float, fail: bool) -> None:
        await asyncio.sleep(delay)
        if fail:
            raise ValueError("child failed")

    async def handler(log: list[str]) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(child(0.01, fail=True))
                group.create_task(child(10, fail=False))  # cancelled by the failure
        except* ValueError:
            log.append("the group failed")

    async def ok_handler(log: list[str]) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(child(0.01, fail=False))
        log.append("the group ended")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        log: list[str] = []
        for coro in (handler(log), ok_handler(log)):
            task = eager.start(loop, coro)
            assert task is not None
            await asyncio.wait_for(task, 5)
        assert log == ["the group failed", "the group ended"]

    asyncio.run(main())


def test_cancelling_the_task_reaches_the_coroutine() -> None:
    async def handler(log: list[str]) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            log.append("cleaned up")

    async def main() -> None:
        log: list[str] = []
        task = eager.start(asyncio.get_running_loop(), handler(log))
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert log == ["cleaned up"]

    asyncio.run(main())


def test_a_cancellation_asked_during_the_first_step_is_thrown_at_its_first_suspension() -> None:
    async def handler(log: list[str]) -> None:
        current = asyncio.current_task()
        assert current is not None
        current.cancel()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async def main() -> None:
        log: list[str] = []
        task = eager.start(asyncio.get_running_loop(), handler(log))
        assert task is not None
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert log == ["cancelled"]

    asyncio.run(main())


def test_inside_a_task_the_first_step_has_its_own_current_task_and_the_caller_gets_its_back() -> (
    None
):
    seen: list[Any] = []

    async def handler() -> None:
        seen.append(asyncio.current_task())

    async def main() -> None:
        outer = asyncio.current_task()
        assert eager.start(asyncio.get_running_loop(), handler()) is None
        assert seen[0] is not None and seen[0] is not outer
        assert asyncio.current_task() is outer

    asyncio.run(main())


def test_an_exception_of_the_first_step_goes_to_the_loops_exception_handler() -> None:
    async def handler() -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        assert eager.start(loop, handler()) is None
        assert len(reported) == 1
        assert isinstance(reported[0]["exception"], RuntimeError)
        assert "handler" in reported[0]["message"]

    asyncio.run(main())


def test_an_exception_after_a_suspension_is_the_tasks() -> None:
    async def handler() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("later")

    async def main() -> None:
        task = eager.start(asyncio.get_running_loop(), handler())
        assert task is not None
        with pytest.raises(RuntimeError, match="later"):
            await task

    asyncio.run(main())


def test_the_coroutine_sees_one_current_task_before_and_after_it_suspends() -> None:
    seen: list[Any] = []

    async def handler() -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())
        seen.append(eager.current_task())

    async def main() -> None:
        task = eager.start(asyncio.get_running_loop(), handler())
        assert task is not None
        assert eager.current_task() is asyncio.current_task()  # the caller's own, back
        await task
        assert seen[0] is seen[1]  # the same front object on both steps
        assert seen[2] is task  # and the real task behind it
        assert seen[1].get_name() == task.get_name()  # forwarded once there is a task

    asyncio.run(main())


def test_anyio_cancel_scopes_and_worker_threads_work_across_the_first_suspension() -> None:
    # FastAPI's stack (starlette's run_in_threadpool) runs sync code through anyio, whose
    # cancel scopes check that they are left in the task they were entered in.
    import anyio
    import anyio.to_thread

    async def handler() -> int:
        with anyio.CancelScope():
            await asyncio.sleep(0)
        value = await anyio.to_thread.run_sync(lambda: 21)
        with anyio.move_on_after(0.05) as scope:
            await asyncio.sleep(10)
        assert scope.cancelled_caught
        return value * 2

    async def main() -> None:
        task = eager.start(asyncio.get_running_loop(), handler())
        assert task is not None
        assert await asyncio.wait_for(task, 5) == 42

    asyncio.run(main())
