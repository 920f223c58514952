"""An app with one echo event and no authentication, for the admission tests:
``socketspec-cluster cluster_echo_app:app``."""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

app = SocketApp()


@app.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return payload
