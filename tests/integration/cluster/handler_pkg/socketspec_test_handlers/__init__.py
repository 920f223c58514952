"""A handler library: a SocketApp in namespace "/plugin", and a ``register(app)`` callable
that adds events to the default namespace."""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

plugin_app = SocketApp(namespace="/plugin")


@plugin_app.on("plugin_ping")
async def plugin_ping(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"from": "plugin", "namespace": conn.namespace, "echo": payload}


def register(app: SocketApp) -> None:
    @app.on("root_ping")
    async def root_ping(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return {"from": "register", "namespace": conn.namespace, "echo": payload}
