"""The middleware chain, compiled once at startup.

Owns composing ``async def mw(conn, event, payload, next_handler)`` callables
around the final dispatch step, first registered outermost (FIFO). A
middleware that does not call ``next_handler`` stops the event there;
whatever the chain returns is the handler's result (used for acks).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from socketspec.connection import Connection
from socketspec.types import EventName, PayloadDict

NextHandler = Callable[[Connection, EventName, PayloadDict], Awaitable[Any]]
Middleware = Callable[[Connection, EventName, PayloadDict, NextHandler], Awaitable[Any]]


async def _layer(
    middleware: Middleware,
    next_handler: NextHandler,
    conn: Connection,
    event: EventName,
    payload: PayloadDict,
) -> Any:
    result = middleware(conn, event, payload, next_handler)
    if inspect.isawaitable(result):
        result = await result
    return result


def compile_chain(middlewares: list[Middleware], endpoint: NextHandler) -> NextHandler:
    chain = endpoint
    for middleware in reversed(middlewares):
        chain = partial(_layer, middleware, chain)
    return chain
