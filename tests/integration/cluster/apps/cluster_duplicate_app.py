"""An app that registers one event twice: the cluster must refuse it before forking."""

from __future__ import annotations

from typing import Any

from socketspec import Connection, SocketApp

app = SocketApp()


@app.on("twice")
async def first(conn: Connection, payload: dict[str, Any]) -> None:
    return None


@app.on("twice")
async def second(conn: Connection, payload: dict[str, Any]) -> None:
    return None
