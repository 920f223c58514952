"""The plain ASGI entry under uvicorn, over real sockets: ``SocketASGI`` served by itself and
``with_socket`` in front of a Starlette app; the HTTP answers on the socket's own paths; the
project's message-size limits whatever the server's."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from importlib import resources
from typing import Any

from asgikit import StartUvicorn, close_code, recv, send
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect

from socketspec import Connection, SocketApp
from socketspec.adapters.asgi import SocketASGI, with_socket


def echo_socket(**settings: Any) -> SocketApp:
    socket = SocketApp(**settings)

    @socket.on("echo")
    async def echo(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return socket


def http_status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_the_entry_served_by_itself(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(SocketASGI(echo_socket(), path="/events"))
    async with connect(server.ws + "/events") as ws:
        assert (await recv(ws))["event"] == "__connect__"
        await send(ws, "echo", {"n": 1}, ack=1)
        assert await recv(ws) == {"event": "__ack__", "ack": 1, "payload": {"n": 1}}
    assert await asyncio.to_thread(http_status, server.http + "/events") == 426
    assert await asyncio.to_thread(http_status, server.http + "/elsewhere") == 404
    assert await asyncio.to_thread(http_status, server.http + "/events", "POST") == 405


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


async def test_the_browser_client_at_the_root_without_docs(start_uvicorn: StartUvicorn) -> None:
    shipped = resources.files("socketspec.apidocs").joinpath("static", "socketspec.js")
    inner = Starlette(routes=[Route("/hello", lambda request: JSONResponse({}))])
    for app in (SocketASGI(echo_socket(), path="/events"), with_socket(inner, echo_socket())):
        server = await start_uvicorn(app)
        status, headers, body = await asyncio.to_thread(fetch, server.http + "/socketspec.js")
        assert (status, body) == (200, shipped.read_bytes())
        assert headers["content-type"] == "text/javascript; charset=utf-8"
        assert headers["cache-control"] == "public, max-age=3600"
        revalidated = {"If-None-Match": headers["etag"]}
        status, headers, body = await asyncio.to_thread(
            fetch, server.http + "/socketspec.js", revalidated
        )
        assert (status, body) == (304, b"")
        assert "content-length" not in {name.lower() for name in headers}
        assert await asyncio.to_thread(http_status, server.http + "/socket-docs") == 404
        await server.stop()


async def test_in_front_of_a_starlette_app(start_uvicorn: StartUvicorn) -> None:
    socket = echo_socket(docs=True)

    async def broadcast(request: Request) -> JSONResponse:
        room = request.path_params["room"]
        return JSONResponse({"delivered": await socket.rooms.broadcast(room, "news", {})})

    @socket.on("join")
    async def join(conn: Connection, payload: dict[str, Any]) -> dict[str, bool]:
        await socket.rooms.join(conn, payload["room"])
        return {"joined": True}

    starlette = Starlette(routes=[Route("/rooms/{room}", broadcast, methods=["POST"])])
    server = await start_uvicorn(with_socket(starlette, socket))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "join", {"room": "r"}, ack="j")
        assert (await recv(ws))["payload"] == {"joined": True}

        def post() -> dict[str, Any]:
            request = urllib.request.Request(server.http + "/rooms/r", method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result

        assert await asyncio.to_thread(post) == {"delivered": 1}
        assert (await recv(ws))["event"] == "news"
    assert await asyncio.to_thread(http_status, server.http + "/socket-docs") == 200
    assert await asyncio.to_thread(http_status, server.http + "/nothing-here") == 404


async def test_message_above_max_message_size_closes_with_1009(
    start_uvicorn: StartUvicorn,
) -> None:
    socket = echo_socket(max_payload_size=1000)
    server = await start_uvicorn(SocketASGI(socket, max_message_size=10_000))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "echo", {"text": "x" * 5000})  # above max_payload_size: refused, open
        assert (await recv(ws))["payload"]["code"] == "PAYLOAD_TOO_LARGE"
        await send(ws, "echo", {"text": "x" * 20_000})  # above the hard limit
        assert await close_code(ws) == 1009


async def test_the_servers_own_cap_closes_with_1009_too(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(SocketASGI(echo_socket()), ws_max_size=10_000)
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "echo", {"text": "x" * 20_000})
        assert await close_code(ws) == 1009
