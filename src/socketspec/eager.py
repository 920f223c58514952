"""Eager tasks: a coroutine's first step runs at once; a task is made only if it suspends.

Owns ``start``, which the connection runtime and the shard use to run handlers and
connection work. Most handlers finish without suspending (``await conn.emit(...)``,
a room broadcast on one shard, a returned ack): for them a task, its scheduling and a
loop turn are pure cost. ``start`` runs the first step inline, in a copy of the current
context, as the coroutine's own task would, and only when the coroutine suspends does it
make the task that carries on from there.

From its first line the coroutine sees a current task (``asyncio.current_task()``), so
``asyncio.timeout`` and ``asyncio.TaskGroup`` work as in a task: an ``EagerTask``, which
counts cancellations until the real task exists and is the real task's front from then
on. Code that compares tasks with the coroutine's (sets of handler tasks) asks
``current_task()`` here, which answers the real task. On Python 3.12 and later the event
loop's own eager start does all of this (``asyncio.Task(..., eager_start=True)``).

Does not own what the coroutines do, nor the sets of tasks that their owners keep.
"""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Coroutine, Generator
from contextvars import copy_context as _copy_context
from typing import Any

# The running task of each loop (Python 3.11 keeps it in this dict; asyncio.current_task
# reads it after a Python-level call of its own). Only the 3.11 path reads it.
_CURRENT_TASKS: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = getattr(
    asyncio.tasks, "_current_tasks", {}
)
_new = object.__new__


class EagerTask:
    """What ``asyncio.current_task()`` is, for the whole life of a coroutine started here.

    During the inline first step there is no task yet: cancellations are counted, and
    thrown into the coroutine at its first suspension. Once the coroutine suspends, the
    real task carries it on and every question (``cancel``, ``cancelling``, ``uncancel``,
    ``done``, and anything else, such as ``get_name`` or ``add_done_callback``) is the
    task's. The coroutine sees this one object as its current task on every step, so
    that code comparing tasks across an ``await`` (anyio's cancel scopes, say) sees the
    same task before and after.
    """

    # Made without ``__init__`` (``_new``), for every handler: the slots stay unset until
    # used, and the methods read an unset one as its default (no task, no cancellation).
    __slots__ = ("__weakref__", "_cancel_message", "_cancels", "task")

    def cancel(self, msg: Any = None) -> bool:
        task = self._task()
        if task is not None:
            return task.cancel(msg)
        self._cancels = self.cancelling() + 1
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        task = self._task()
        if task is not None:
            return task.cancelling()
        return int(getattr(self, "_cancels", 0))

    def uncancel(self) -> int:
        task = self._task()
        if task is not None:
            return task.uncancel()
        self._cancels = max(0, self.cancelling() - 1)
        return self._cancels

    def done(self) -> bool:
        task = self._task()
        return task.done() if task is not None else False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        task = self._task()
        return task.get_loop() if task is not None else asyncio.get_running_loop()

    @property
    def _fut_waiter(self) -> Any:  # read by anyio when it delivers a cancellation
        return getattr(self._task(), "_fut_waiter", None)

    def __getattr__(self, name: str) -> Any:
        if name in EagerTask.__slots__:  # an unset slot
            raise AttributeError(name)
        task = self._task()
        if task is None:
            raise AttributeError(f"{name!r}: the coroutine has not suspended yet, no task")
        return getattr(task, name)

    def _task(self) -> asyncio.Task[Any] | None:
        task: asyncio.Task[Any] | None = getattr(self, "task", None)
        return task

    def pending(self) -> BaseException | None:
        """What a cancellation asked for during the first step throws into the coroutine."""
        if not self.cancelling():
            return None
        return asyncio.CancelledError(getattr(self, "_cancel_message", None))

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The real task carries on; from now on everything is asked of it."""
        self.task = task


def current_task() -> asyncio.Task[Any] | None:
    """``asyncio.current_task()``, with the real task (or None, during a first step) in
    place of an ``EagerTask``: what sets of tasks are compared with."""
    current: Any = asyncio.current_task()
    if isinstance(current, EagerTask):
        return current._task()
    task: asyncio.Task[Any] | None = current
    return task


class _Swap:
    """Makes ``stand_in`` the loop's current task around one step of the coroutine, in
    asyncio's own table (what ``_enter_task`` and ``_leave_task`` do, without their calls;
    ``_start_eagerly`` does the same inline for the first step, where a call counts)."""

    __slots__ = ("loop", "outer", "stand_in")

    def __init__(self, loop: asyncio.AbstractEventLoop, stand_in: EagerTask) -> None:
        self.loop = loop
        self.stand_in: Any = stand_in
        self.outer: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        self.outer = _CURRENT_TASKS.get(self.loop)
        _CURRENT_TASKS[self.loop] = self.stand_in

    def __exit__(self, *exc_info: object) -> None:
        if self.outer is None:
            del _CURRENT_TASKS[self.loop]
        else:
            _CURRENT_TASKS[self.loop] = self.outer
            self.outer = None


@types.coroutine
def _carry_on(
    coro: Coroutine[Any, Any, Any], yielded: Any, swap: _Swap, pending: BaseException | None
) -> Generator[Any, Any, Any]:
    """Hands the task what the first step yielded (a future it waits for, or None), then
    passes every resumption and every thrown exception (a cancellation among them) on to
    the coroutine, each step with its ``EagerTask`` as the current task; ``pending`` is
    thrown in first (a cancellation asked for during the first step)."""
    while True:
        if pending is not None:
            exc, pending = pending, None
            try:
                with swap:
                    yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            sent = yield yielded
        except BaseException as exc:  # the task throws what it must into the coroutine
            pending = exc
            continue
        try:
            with swap:
                yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value


async def _rest(
    coro: Coroutine[Any, Any, Any], yielded: Any, swap: _Swap, pending: BaseException | None
) -> Any:
    return await _carry_on(coro, yielded, swap, pending)


def _start_eagerly(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any] | None:
    """Python 3.11: the first step here, with an ``EagerTask`` as the current task."""
    context = _copy_context()
    stand_in: EagerTask = _new(EagerTask)
    # The loop's current task, set and restored in asyncio's own table as ``_Swap`` does,
    # inline: the first step is not the caller's task's.
    current = _CURRENT_TASKS
    outer = current.get(loop)
    current[loop] = stand_in  # type: ignore[assignment]
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        if not isinstance(exc, asyncio.CancelledError):
            _report(loop, exc, coro)
        return None
    finally:
        if outer is None:
            del current[loop]
        else:
            current[loop] = outer
    swap = _Swap(loop, stand_in)
    task = loop.create_task(_rest(coro, yielded, swap, stand_in.pending()), context=context)
    stand_in.bind(task)
    return task


def _start_natively(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any] | None:
    """Python 3.12 and later: the event loop's own eager start."""
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    if not task.done():
        return task
    if not task.cancelled() and task.exception() is not None:
        _report(loop, task.exception(), coro)
    return None


start = _start_natively if sys.version_info >= (3, 12) else _start_eagerly
"""``start(loop, coro)``: run ``coro`` up to its first suspension now; None if it finished
there, else the task that runs the rest. An exception that ends the first step is the
loop's to report, as a task's unretrieved exception would be."""


def _report(
    loop: asyncio.AbstractEventLoop, exc: BaseException | None, coro: Coroutine[Any, Any, Any]
) -> None:
    loop.call_exception_handler(
        {
            "message": f"exception in the first step of {getattr(coro, '__qualname__', coro)!r}",
            "exception": exc,
        }
    )
