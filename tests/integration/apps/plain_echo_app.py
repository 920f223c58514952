"""The app the clean-install test serves from a venv without extras: one echo event.
``socketspec-cluster plain_echo_app:app``."""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

app = SocketApp()


@app.on("echo")
async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return payload
