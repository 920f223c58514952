"""Startup validation before the first connection, and namespaces."""

from __future__ import annotations

from typing import Any

import pytest

from socketspec import Connection, SocketApp
from socketspec.errors import (
    RESERVED_EVENTS,
    DuplicateEventError,
    ReservedEventNameError,
    UnknownNamespaceError,
)
from socketspec.testing import TestClient

OK = 2.0

ENTRY_POINTS = ["app.startup", "async-with-client", "await-connect", "connect-context"]


async def start(app: SocketApp, how: str) -> None:
    """Start ``app`` the way a user would; each must validate the registrations first."""
    if how == "app.startup":
        app.startup()
    elif how == "async-with-client":
        async with TestClient(app):
            pass
    elif how == "await-connect":
        client = TestClient(app)
        conn = await client.connect()
        await conn.close()
    else:
        async with TestClient(app).connect():
            pass


def app_with_connect_log() -> tuple[SocketApp, list[str]]:
    app = SocketApp()
    connected: list[str] = []

    @app.on_connect
    async def hello(conn: Connection) -> None:
        connected.append(conn.id)

    @app.on("fine")
    async def fine(conn: Connection) -> None:
        return None

    return app, connected


# -- startup validation -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ENTRY_POINTS)
async def test_duplicate_event_is_refused_at_startup_not_at_decoration(how: str) -> None:
    app, connected = app_with_connect_log()

    @app.on("save")
    async def save_v1(conn: Connection) -> None:
        return None

    @app.on("save")  # no error yet: problems are collected and raised at startup
    async def save_v2(conn: Connection) -> None:
        return None

    with pytest.raises(DuplicateEventError) as raised:
        await start(app, how)
    assert "save" in str(raised.value)
    assert connected == []
    assert app.connections == []
    assert not app.started
    with pytest.raises(DuplicateEventError):  # and it stays refused
        await start(app, how)


@pytest.mark.parametrize("how", ENTRY_POINTS)
@pytest.mark.parametrize("name", sorted(RESERVED_EVENTS))
async def test_reserved_event_name_is_refused_at_startup_not_at_decoration(
    name: str, how: str
) -> None:
    app, connected = app_with_connect_log()

    @app.on(name)
    async def hijack(conn: Connection, payload: dict[str, Any]) -> None:
        return None

    with pytest.raises(ReservedEventNameError) as raised:
        await start(app, how)
    assert name in str(raised.value)
    assert connected == []
    assert app.connections == []


async def test_same_event_in_two_namespaces_is_not_a_duplicate() -> None:
    app = SocketApp()

    @app.on("status")
    async def public_status(conn: Connection) -> str:
        return "public"

    @app.on("status", namespace="/admin")
    async def admin_status(conn: Connection) -> str:
        return "admin"

    app.startup()
    assert app.started


# -- namespaces ---------------------------------------------------------------------------------


def namespaced_app() -> SocketApp:
    app = SocketApp()

    @app.on("status")
    async def public_status(conn: Connection) -> dict[str, str]:
        return {"handler": "public", "namespace": conn.namespace}

    @app.on("status", namespace="/admin")
    async def admin_status(conn: Connection) -> dict[str, str]:
        return {"handler": "admin", "namespace": conn.namespace}

    @app.on("purge", namespace="/admin")
    async def purge(conn: Connection, payload: dict[str, Any]) -> str:
        return f"purged {payload['what']}"

    @app.on("chat")
    async def chat(conn: Connection, payload: dict[str, Any]) -> str:
        return payload["text"]

    return app


async def test_namespaced_event_is_only_reachable_from_its_namespace() -> None:
    app = namespaced_app()
    async with TestClient(app) as client:
        public = await client.connect()
        admin = await client.connect(namespace="/admin")
        assert admin.connection.namespace == "/admin"
        assert public.connection.namespace == "/"

        assert await admin.call("purge", {"what": "cache"}, timeout=OK) == "purged cache"
        await public.emit("purge", {"what": "cache"})
        error = await public.receive_error("UNKNOWN_EVENT", timeout=OK)
        assert error["event"] == "purge"

        assert await public.call("chat", {"text": "hi"}, timeout=OK) == "hi"
        await admin.emit("chat", {"text": "hi"})
        error = await admin.receive_error("UNKNOWN_EVENT", timeout=OK)
        assert error["event"] == "chat"
        assert not admin.closed
        assert not public.closed


async def test_same_event_name_routes_to_each_namespace_handler() -> None:
    app = namespaced_app()
    async with TestClient(app) as client:
        public = await client.connect()
        admin = await client.connect(namespace="/admin")
        admin_unslashed = await client.connect(namespace="admin")
        assert await public.call("status", {}, timeout=OK) == {
            "handler": "public",
            "namespace": "/",
        }
        assert await admin.call("status", {}, timeout=OK) == {
            "handler": "admin",
            "namespace": "/admin",
        }
        assert await admin_unslashed.call("status", {}, timeout=OK) == {
            "handler": "admin",
            "namespace": "/admin",
        }


@pytest.mark.parametrize("namespace", ["/nowhere", "/admin/extra", "/Admin"])
async def test_connecting_to_an_unknown_namespace_raises(namespace: str) -> None:
    app = namespaced_app()
    connected: list[str] = []
    app.on_connect(lambda conn: connected.append(conn.id))
    async with TestClient(app) as client:
        with pytest.raises(UnknownNamespaceError):
            await client.connect(namespace=namespace)
        with pytest.raises(UnknownNamespaceError):
            async with client.connect(namespace=namespace):
                pass
        assert connected == []
        assert app.connections == []
