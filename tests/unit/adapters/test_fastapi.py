"""``mount``: the routes it adds to a FastAPI app and the lifespan it wraps around the
user's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.routing import Router

from socketspec import SocketApp
from socketspec.adapters.fastapi import mount


def socket_with_echo(**settings: Any) -> SocketApp:
    socket = SocketApp(**settings)

    @socket.on("echo")
    async def echo(conn: Any, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return socket


def paths(app: Any) -> list[str]:
    return [route.path for route in app.router.routes]


def test_routes_for_the_socket_and_with_docs_the_docs() -> None:
    app = FastAPI()
    mount(socket_with_echo(), app, path="/events")
    assert {"/events", "/events/{namespace:path}"} <= set(paths(app))
    assert "/socket-docs" not in paths(app)
    with_docs = FastAPI()
    mount(socket_with_echo(docs=True, docs_url="/help"), with_docs)
    assert {"/ws", "/help", "/help/{rest:path}", "/asyncapi.json"} <= set(paths(with_docs))


def test_a_router_is_enough_and_anything_else_is_refused() -> None:
    router = Router()
    mount(socket_with_echo(), router)
    assert "/ws" in [route.path for route in router.routes]  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="needs a FastAPI or Starlette app, got dict"):
        mount(socket_with_echo(), {})


async def test_the_socket_starts_before_and_drains_before_the_users_lifespan() -> None:
    order: list[str] = []
    socket = socket_with_echo()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        order.append(f"user startup (socket started: {socket.started})")
        yield
        order.append("user shutdown")

    app = FastAPI(lifespan=lifespan)
    mount(socket, app, drain_on_signal=False)
    original = socket.drain

    async def drain(timeout: float) -> None:
        order.append("socket drain")
        await original(timeout)

    socket.drain = drain  # type: ignore[method-assign]
    async with app.router.lifespan_context(app):
        order.append("serving")
    assert order == [
        "user startup (socket started: True)",
        "serving",
        "socket drain",
        "user shutdown",
    ]
