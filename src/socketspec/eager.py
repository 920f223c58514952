"""Eager tasks: a coroutine's first step runs at once; a task is made only if it suspends.

Owns ``start``, which the connection runtime and the shard use to run handlers and
connection work. Most handlers finish without suspending (``await conn.emit(...)``,
a room broadcast on one shard, a returned ack): for them a task, its scheduling and a
loop turn are pure cost. ``start`` runs the first step inline, in a copy of the current
context, as the coroutine's own task would, and only when the coroutine suspends does it
make the task that carries on from there.

During that first step the coroutine sees a current task (``asyncio.current_task()``),
so ``asyncio.timeout`` and ``asyncio.TaskGroup`` work from its first line: a stand-in
(``_FirstStep``) that records cancellation until the real task exists and forwards to it
from then on. On Python 3.12 and later the event loop's own eager start does all of this
(``asyncio.Task(..., eager_start=True)``).

Does not own what the coroutines do, nor the sets of tasks that their owners keep.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine, Generator
from typing import Any, cast


class _FirstStep:
    """The current task while a coroutine's first step runs inline: what ``asyncio.timeout``
    and ``TaskGroup`` ask of a task (cancel, cancelling, uncancel), kept until the real
    task takes over."""

    __slots__ = ("_cancel_message", "_cancels", "task")

    def __init__(self) -> None:
        self._cancels = 0
        self._cancel_message: Any = None
        self.task: asyncio.Task[Any] | None = None

    def cancel(self, msg: Any = None) -> bool:
        if self.task is not None:
            return self.task.cancel(msg)
        self._cancels += 1
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        return self.task.cancelling() if self.task is not None else self._cancels

    def uncancel(self) -> int:
        if self.task is not None:
            return self.task.uncancel()
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self) -> bool:
        return self.task.done() if self.task is not None else False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def pending(self) -> BaseException | None:
        """What a cancellation asked for during the first step throws into the coroutine."""
        return asyncio.CancelledError(self._cancel_message) if self._cancels else None

    def bind(self, task: asyncio.Task[Any]) -> None:
        """The real task carries on; from now on everything is asked of it."""
        self.task = task
        self._cancels = 0


@types.coroutine
def _carry_on(
    coro: Coroutine[Any, Any, Any], yielded: Any, pending: BaseException | None
) -> Generator[Any, Any, Any]:
    """Hands the task what the first step yielded (a future it waits for, or None), then
    passes every resumption and every thrown exception (a cancellation among them) on to
    the coroutine; ``pending`` is thrown in first (a cancellation asked for during the
    first step)."""
    while True:
        if pending is not None:
            exc, pending = pending, None
            try:
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
            yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value


async def _rest(coro: Coroutine[Any, Any, Any], yielded: Any, pending: BaseException | None) -> Any:
    return await _carry_on(coro, yielded, pending)


def start(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]
) -> asyncio.Task[Any] | None:
    """Run ``coro`` up to its first suspension now; None if it finished there, else the task
    that runs the rest. An exception that ends the first step is the loop's to report, as a
    task's unretrieved exception would be."""
    if sys.version_info >= (3, 12):
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, eager_start=True)
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                _report(loop, task.exception(), coro)
            return None
        return task
    context = contextvars.copy_context()
    step = _FirstStep()
    outer = asyncio.current_task(loop)
    if outer is not None:
        _leave_task(loop, outer)  # the first step is not the caller's task's
    _enter_task(loop, cast("asyncio.Task[Any]", step))
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
        _leave_task(loop, cast("asyncio.Task[Any]", step))
        if outer is not None:
            _enter_task(loop, outer)
    task = loop.create_task(_rest(coro, yielded, step.pending()), context=context)
    step.bind(task)
    return task


def _report(
    loop: asyncio.AbstractEventLoop, exc: BaseException | None, coro: Coroutine[Any, Any, Any]
) -> None:
    loop.call_exception_handler(
        {
            "message": f"exception in the first step of {getattr(coro, '__qualname__', coro)!r}",
            "exception": exc,
        }
    )
