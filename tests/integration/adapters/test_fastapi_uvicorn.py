"""The FastAPI adapter under uvicorn, over real sockets with the websockets library as client:
the envelope, acks, rooms, auth, origins, limits and close codes as on the cluster."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect

from socketspec import SocketApp
from socketspec.adapters.fastapi import mount

from .conftest import StartUvicorn


class Say(BaseModel):
    text: str


def chat_socket(**settings: Any) -> SocketApp:
    socket = SocketApp(**settings)

    @socket.on("echo")
    async def echo(conn: Any, payload: Say) -> dict[str, str]:
        await conn.emit("echo_response", {"text": payload.text, "from": conn.id})
        return {"got": payload.text}

    @socket.on("join")
    async def join(conn: Any, payload: dict[str, Any]) -> dict[str, str]:
        await socket.rooms.join(conn, payload["room"])
        return {"joined": payload["room"]}

    @socket.on("say")
    async def say(conn: Any, payload: dict[str, Any]) -> None:
        await socket.rooms.broadcast(payload["room"], "said", {"text": payload["text"]})

    return socket


def fastapi_app(socket: SocketApp, **mount_settings: Any) -> FastAPI:
    app = FastAPI()
    mount(socket, app, path="/ws", **mount_settings)
    return app


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def recv_event(ws: ClientConnection, event: str, timeout: float = 5.0) -> dict[str, Any]:
    while True:
        message = await recv(ws, timeout)
        if message["event"] == event:
            return message


async def send(ws: ClientConnection, event: str, payload: Any, ack: str | None = None) -> None:
    message: dict[str, Any] = {"event": event, "payload": payload}
    if ack is not None:
        message["ack"] = ack
    await ws.send(json.dumps(message))


async def test_envelope_ack_and_room_broadcast(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(fastapi_app(chat_socket()))
    async with connect(server.ws + "/ws") as alice, connect(server.ws + "/ws") as bob:
        hello = await recv(alice)
        assert hello["event"] == "__connect__"
        await recv(bob)
        await send(alice, "echo", {"text": "hi"}, ack="a1")
        response = await recv(alice)
        assert response["event"] == "echo_response"
        assert response["payload"] == {"text": "hi", "from": hello["payload"]["conn_id"]}
        ack = await recv(alice)
        assert ack == {"event": "__ack__", "payload": {"got": "hi"}, "ack": "a1"}
        for ws in (alice, bob):
            await send(ws, "join", {"room": "lobby"}, ack="j")
            assert (await recv_event(ws, "__ack__"))["ack"] == "j"
        await send(alice, "say", {"room": "lobby", "text": "hello all"})
        for ws in (alice, bob):
            said = await recv_event(ws, "said")
            assert said["payload"] == {"text": "hello all"}
