"""An app that registers one event twice: the CLI must refuse to serve it."""

from __future__ import annotations

from socketspec import Connection, SocketApp

socket = SocketApp()


@socket.on("twice")
async def first(conn: Connection) -> None:
    return None


@socket.on("twice")
async def second(conn: Connection) -> None:
    return None
