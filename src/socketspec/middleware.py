"""The middleware chain, compiled once at startup.

Owns composing ``async def mw(conn, event, payload, call_next)`` callables
around the final dispatch step, first registered outermost (FIFO). A
middleware that does not call ``call_next`` stops the event there; whatever
the chain returns is the handler's result (used for acks).

``call_next`` takes either no arguments (the event goes on as it came, the
reference's code and tests) or ``(conn, event, payload)`` (the event goes on
as the middleware rewrote it, the reference's docs). Which form a middleware
uses is only known when it calls, so each layer hands it one
``functools.partial`` that takes both; what is decided when the chain is
compiled is everything else: no middleware means the endpoint itself, and a
plain ``async def`` middleware is awaited without asking whether its result is
awaitable. Sync middleware (and callable objects) work too.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from socketspec.connection import Connection
from socketspec.types import EventName, PayloadDict

# What the chain and each layer's downstream are: called with the event, returns the result.
NextHandler = Callable[[Connection, EventName, PayloadDict], Awaitable[Any]]
# What a middleware is given: ``call_next()`` or ``call_next(conn, event, payload)``.
CallNext = Callable[..., Awaitable[Any]]
Middleware = Callable[[Connection, EventName, PayloadDict, CallNext], Any]


# Every layer (and the endpoint's wrapper) takes the event, then, optionally, the event as
# the middleware above rewrote it: ``call_next`` is ``partial(downstream, conn, event,
# payload)``, so ``call_next()`` passes the event on unchanged and ``call_next(c, e, p)``
# arrives as ``rewritten``. One partial per layer and event, no extra frame per layer.


def _call_next_misused(rewritten: tuple[Any, ...]) -> TypeError:
    return TypeError(
        f"call_next takes no arguments or (conn, event, payload), got {len(rewritten)}"
    )


def _arguments(
    conn: Connection, event: EventName, payload: PayloadDict, rewritten: tuple[Any, ...]
) -> tuple[Connection, EventName, PayloadDict]:
    """What the next layer gets: the upstream call's arguments, or those ``call_next``
    was given (the documented ``call_next(conn, event, payload)`` form)."""
    if not rewritten:
        return conn, event, payload
    try:
        conn, event, payload = rewritten
    except ValueError:
        raise _call_next_misused(rewritten) from None
    return conn, event, payload


async def _async_layer(
    middleware: Middleware,
    downstream: CallNext,
    conn: Connection,
    event: EventName,
    payload: PayloadDict,
    *rewritten: Any,
) -> Any:
    conn, event, payload = _arguments(conn, event, payload, rewritten)
    return await middleware(conn, event, payload, partial(downstream, conn, event, payload))


async def _any_layer(
    middleware: Middleware,
    downstream: CallNext,
    conn: Connection,
    event: EventName,
    payload: PayloadDict,
    *rewritten: Any,
) -> Any:
    # A plain function (or a callable object) that may or may not return an awaitable.
    conn, event, payload = _arguments(conn, event, payload, rewritten)
    result = middleware(conn, event, payload, partial(downstream, conn, event, payload))
    if inspect.isawaitable(result):
        result = await result
    return result


def _endpoint(
    endpoint: NextHandler,
    conn: Connection,
    event: EventName,
    payload: PayloadDict,
    *rewritten: Any,
) -> Awaitable[Any]:
    if rewritten:
        try:
            conn, event, payload = rewritten
        except ValueError:
            raise _call_next_misused(rewritten) from None
    return endpoint(conn, event, payload)


def compile_chain(middlewares: list[Middleware], endpoint: NextHandler) -> NextHandler:
    if not middlewares:
        return endpoint
    chain: CallNext = partial(_endpoint, endpoint)
    for middleware in reversed(middlewares):
        layer = _async_layer if inspect.iscoroutinefunction(middleware) else _any_layer
        chain = partial(layer, middleware, chain)
    return chain
