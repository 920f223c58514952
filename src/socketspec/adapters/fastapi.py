"""``mount(socket, app)``: a ``SocketApp`` inside a FastAPI (or Starlette) application.

Owns adding the ASGI entry's routes to the app (the WebSocket endpoint at ``path`` and
``path/<namespace>``, the browser client at ``/socketspec.js``, and when the socket has
docs, the docs page, its schema and assets and ``/asyncapi.json``) and hooking the entry
into the app's lifespan without replacing the user's: the socket starts (validates) before
the user's startup and drains before the user's shutdown, so handlers still finishing
during the drain find what the user's lifespan opened. The only module that imports
FastAPI (through Starlette's routing): the ``fastapi`` extra.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from socketspec.adapters.asgi import (
    DEFAULT_GRACEFUL_TIMEOUT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_OUTBOUND,
    SocketASGI,
)
from socketspec.apidocs.routes import ASYNCAPI_PATH, CLIENT_PATH
from socketspec.app import SocketApp

try:
    from starlette.routing import Route, Router, WebSocketRoute
except ImportError as exc:  # pragma: no cover - exercised in a venv without the extra
    raise ImportError(
        "socketspec.adapters.fastapi needs FastAPI: pip install socketspec[fastapi]"
    ) from exc

__all__ = ["mount"]


def mount(
    socket: SocketApp,
    app: Any,
    path: str = "/ws",
    *,
    max_outbound: int = DEFAULT_MAX_OUTBOUND,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    drain_on_signal: bool = True,
) -> SocketASGI:
    """Serve ``socket`` at ``path`` (``ws://host/ws``; namespace ``/x`` at ``/ws/x``) and its
    docs, beside ``app``'s own routes; returns the ASGI entry.

    Args:
        app: a FastAPI or Starlette application (or a Starlette ``Router``).
        max_outbound: bytes of messages waiting for one client before it is closed with 4008.
        max_message_size: a received message above it closes the connection with 1009.
        graceful_timeout: seconds running handlers get to finish on shutdown.
        drain_on_signal: take the server's SIGINT/SIGTERM first to drain (uvicorn).
    """
    entry = SocketASGI(
        socket,
        path=path,
        max_outbound=max_outbound,
        max_message_size=max_message_size,
        graceful_timeout=graceful_timeout,
        drain_on_signal=drain_on_signal,
    )
    router = app if isinstance(app, Router) else getattr(app, "router", None)
    if not isinstance(router, Router):
        raise TypeError(f"mount() needs a FastAPI or Starlette app, got {type(app).__name__}")
    base = entry.path
    router.routes.append(WebSocketRoute(base, endpoint=entry))
    router.routes.append(WebSocketRoute(base.rstrip("/") + "/{namespace:path}", endpoint=entry))
    # The browser client is public code, served with or without docs (apidocs/routes.py).
    router.routes.append(
        Route(CLIENT_PATH, endpoint=entry, methods=["GET"], include_in_schema=False)
    )
    if socket.docs:
        docs = socket.docs_url.rstrip("/")
        for route_path in (docs, docs + "/{rest:path}", ASYNCAPI_PATH):
            router.routes.append(
                Route(route_path, endpoint=entry, methods=["GET"], include_in_schema=False)
            )
    router.lifespan_context = _with_socket_lifespan(entry, router.lifespan_context)
    return entry


def _with_socket_lifespan(
    entry: SocketASGI, user_lifespan: Callable[[Any], AbstractAsyncContextManager[Any]]
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        await entry.startup()
        try:
            async with user_lifespan(app) as state:
                try:
                    yield state
                finally:
                    await entry.drain()
        finally:
            await entry.shutdown()

    return lifespan
