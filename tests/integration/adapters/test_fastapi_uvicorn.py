"""The FastAPI adapter under uvicorn, over real sockets with the websockets library as client:
the envelope, acks, rooms, auth, origins, limits, heartbeats and close codes as on the
cluster, the docs routes, and a REST route reaching the socket's rooms."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asgikit import StartUvicorn, UvicornProcess, close_code, recv, recv_event, send
from fastapi import FastAPI
from pydantic import BaseModel
from rawws import RawWS
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import socketspec
from socketspec import SocketApp
from socketspec.adapters.fastapi import mount
from socketspec.security.auth import APIKeyAuth
from socketspec.security.ratelimit import RateLimit
from socketspec.session import SessionConfig
from socketspec.testing import TestClient


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

    @socket.on("flood")
    async def flood(conn: Any, payload: dict[str, Any]) -> None:
        # Paced: a client that reads keeps up; one that stops reading falls behind.
        blob = "x" * payload["size"]
        for i in range(payload["count"]):
            await conn.emit("blob", {"i": i, "blob": blob})
            await asyncio.sleep(0)

    return socket


def fastapi_app(socket: SocketApp, **mount_settings: Any) -> FastAPI:
    app = FastAPI()
    mount(socket, app, path="/ws", **mount_settings)
    return app


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


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


async def test_validation_error_and_unknown_event_keep_the_connection(
    start_uvicorn: StartUvicorn,
) -> None:
    server = await start_uvicorn(fastapi_app(chat_socket()))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "echo", {"wrong": 1}, ack="v")
        error = await recv(ws)
        assert error["event"] == "__error__"
        assert error["payload"]["code"] == "VALIDATION_ERROR"
        await send(ws, "nope", {})
        assert (await recv(ws))["payload"]["code"] == "UNKNOWN_EVENT"
        await ws.send("not json")
        assert (await recv(ws))["payload"]["code"] == "VALIDATION_ERROR"
        await send(ws, "echo", {"text": "still here"})
        assert (await recv(ws))["payload"]["text"] == "still here"


async def test_auth_from_header_and_query_and_refusal_with_4001(
    start_uvicorn: StartUvicorn,
) -> None:
    socket = chat_socket(auth=APIKeyAuth({"s3cret": "user-7"}))
    server = await start_uvicorn(fastapi_app(socket))
    async with connect(server.ws + "/ws", additional_headers={"x-api-key": "s3cret"}) as ws:
        assert (await recv(ws))["payload"]["user_id"] == "user-7"
    async with connect(server.ws + "/ws?api_key=s3cret") as ws:
        assert (await recv(ws))["payload"]["user_id"] == "user-7"
    async with connect(server.ws + "/ws?api_key=wrong") as ws:
        error = await recv(ws)
        assert error["event"] == "__error__"
        assert error["payload"]["code"] == "AUTH_ERROR"
        assert await close_code(ws) == 4001
    assert socket.connections == []


async def test_origin_refused_before_the_upgrade(start_uvicorn: StartUvicorn) -> None:
    socket = chat_socket(allowed_origins=["http://good.example"])
    server = await start_uvicorn(fastapi_app(socket))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws + "/ws", origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with connect(server.ws + "/ws", origin="http://good.example") as ws:  # type: ignore[arg-type]
        assert (await recv(ws))["event"] == "__connect__"


async def test_unknown_path_under_the_socket_is_refused(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(fastapi_app(chat_socket()))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.ws + "/ws/no-such-namespace"):
            pass
    assert refused.value.response.status_code in (403, 404)


async def test_namespace_under_the_path(start_uvicorn: StartUvicorn) -> None:
    socket = chat_socket()

    @socket.on("ping_admin", namespace="/admin")
    async def ping_admin(conn: Any, payload: dict[str, Any]) -> dict[str, str]:
        return {"namespace": conn.namespace}

    server = await start_uvicorn(fastapi_app(socket))
    async with connect(server.ws + "/ws/admin") as ws:
        assert (await recv(ws))["payload"]["namespace"] == "/admin"
        await send(ws, "ping_admin", {}, ack="n")
        assert (await recv(ws))["payload"] == {"namespace": "/admin"}


async def test_rate_limit_error(start_uvicorn: StartUvicorn) -> None:
    socket = chat_socket(rate_limit=RateLimit(events=3, per_seconds=60))
    server = await start_uvicorn(fastapi_app(socket))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        for i in range(4):
            await send(ws, "echo", {"text": str(i)}, ack=str(i))
        codes = []
        for _ in range(7):  # three replies and three acks, then the refusal
            message = await recv(ws)
            if message["event"] == "__error__":
                codes.append(message["payload"]["code"])
                assert message["ack"] == "3"
        assert codes == ["RATE_LIMIT_ERROR"]


async def test_heartbeat_timeout_closes_with_4005(start_uvicorn: StartUvicorn) -> None:
    session = SessionConfig(heartbeat_interval=0.3, heartbeat_timeout=1.0)
    server = await start_uvicorn(fastapi_app(chat_socket(session=session)))
    async with connect(server.ws + "/ws") as silent, connect(server.ws + "/ws") as answering:
        await recv(silent)
        await recv(answering)
        ping = await recv_event(silent, "__ping__")
        assert "ts" in ping["payload"]
        for _ in range(3):  # answering connection stays past several heartbeat periods
            await recv_event(answering, "__ping__")
            await send(answering, "__pong__", {})
        assert await close_code(silent) == 4005
        await send(answering, "echo", {"text": "alive"})
        assert (await recv_event(answering, "echo_response"))["payload"]["text"] == "alive"


async def test_payload_too_large_keeps_the_connection(start_uvicorn: StartUvicorn) -> None:
    server = await start_uvicorn(fastapi_app(chat_socket(max_payload_size=1000)))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "echo", {"text": "x" * 5000})
        error = await recv(ws)
        assert error["payload"]["code"] == "PAYLOAD_TOO_LARGE"
        assert error["payload"]["details"] == {"max_payload_size": 1000}
        await send(ws, "echo", {"text": "small"})
        assert (await recv(ws))["payload"]["text"] == "small"


async def test_client_that_stops_reading_is_closed_with_4008(start_uvicorn: StartUvicorn) -> None:
    socket = chat_socket()
    slow = asyncio.Event()
    socket.on_disconnect(lambda conn, reason: reason == "slow_consumer" and slow.set())
    limit = 64 * 1024
    server = await start_uvicorn(fastapi_app(socket, max_outbound=limit), sndbuf=16384)
    flood = {"size": 8000, "count": 400}  # 3.2 MB, far past the bound and the kernel buffers
    # A client that reads keeps up with the same flood.
    async with connect(server.ws + "/ws") as reader:
        await recv(reader)
        await send(reader, "flood", flood)
        for i in range(flood["count"]):
            assert (await recv(reader))["payload"]["i"] == i
    # One that completes the handshake, asks for the flood, then does not read.
    stalled = await RawWS.open(server.port, rcvbuf=4096)
    stalled.send_event("flood", flood)
    await asyncio.wait_for(slow.wait(), 10)
    # When it reads again it finds what was already on its way, then the Close frame.
    assert (await stalled.read_close(timeout=15)).close_code == 4008
    await stalled.aclose()
    async with connect(server.ws + "/ws") as after:
        assert (await recv(after))["event"] == "__connect__"


async def test_docs_page_schema_asyncapi_assets_and_token(start_uvicorn: StartUvicorn) -> None:
    socket = chat_socket(docs=True, docs_access_token="docs-token")
    app = fastapi_app(socket)

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "rest"}

    server = await start_uvicorn(app)
    base = server.http
    status, headers, _ = await asyncio.to_thread(http_get, base + "/socket-docs")
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    url = base + "/socket-docs?token=docs-token"
    status, headers, page = await asyncio.to_thread(http_get, url)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"/ws" in page and b"__WS_PATH__" not in page
    bearer = {"Authorization": "Bearer docs-token"}
    status, _, body = await asyncio.to_thread(http_get, base + "/socket-docs/schema", bearer)
    assert status == 200
    assert "echo" in json.dumps(json.loads(body))
    status, _, body = await asyncio.to_thread(http_get, base + "/asyncapi.json", bearer)
    assert status == 200
    document = json.loads(body)
    assert document["asyncapi"].startswith("3.")
    status, headers, body = await asyncio.to_thread(
        http_get, base + "/socket-docs/static/app.js", bearer
    )
    assert status == 200 and headers["content-type"].startswith("text/javascript") and body
    status, _, _ = await asyncio.to_thread(http_get, base + "/socket-docs/static/nope.js", bearer)
    assert status == 404
    # the user's REST routes sit beside them
    status, _, body = await asyncio.to_thread(http_get, base + "/api/hello")
    assert (status, json.loads(body)) == (200, {"hello": "rest"})


async def test_mount_serves_the_browser_client_without_docs(start_uvicorn: StartUvicorn) -> None:
    shipped = Path(socketspec.__file__).parent / "apidocs" / "static" / "socketspec.js"
    server = await start_uvicorn(fastapi_app(chat_socket()))
    status, headers, body = await asyncio.to_thread(http_get, server.http + "/socketspec.js")
    assert (status, body) == (200, shipped.read_bytes())
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "public, max-age=3600"
    status, _, body = await asyncio.to_thread(
        http_get, server.http + "/socketspec.js", {"If-None-Match": headers["etag"]}
    )
    assert (status, body) == (304, b"")
    assert (await asyncio.to_thread(http_get, server.http + "/socket-docs"))[0] == 404


async def test_rest_route_broadcasts_to_a_room_and_emits_to_one(
    start_uvicorn: StartUvicorn,
) -> None:
    socket = chat_socket()
    app = fastapi_app(socket)

    @app.post("/notify/{room}")
    async def notify(room: str, text: str) -> dict[str, int]:
        return {"delivered": await socket.rooms.broadcast(room, "notice", {"text": text})}

    @app.post("/direct/{conn_id}")
    async def direct(conn_id: str) -> dict[str, bool]:
        return {"sent": await socket.rooms.emit_to(conn_id, "direct", {"for": conn_id})}

    server = await start_uvicorn(app)

    def post(path: str) -> dict[str, Any]:
        request = urllib.request.Request(server.http + path, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result

    async with connect(server.ws + "/ws") as member, connect(server.ws + "/ws") as other:
        member_id = (await recv(member))["payload"]["conn_id"]
        await recv(other)
        await send(member, "join", {"room": "news"}, ack="j")
        await recv_event(member, "__ack__")
        assert await asyncio.to_thread(post, "/notify/news?text=breaking") == {"delivered": 1}
        assert (await recv_event(member, "notice"))["payload"] == {"text": "breaking"}
        assert await asyncio.to_thread(post, f"/direct/{member_id}") == {"sent": True}
        assert (await recv_event(member, "direct"))["payload"] == {"for": member_id}
        assert await asyncio.to_thread(post, "/direct/no-such-connection") == {"sent": False}
        # the other client got neither
        await send(other, "echo", {"text": "mine"})
        assert (await recv(other))["event"] == "echo_response"


async def test_user_lifespan_runs_around_the_socket(start_uvicorn: StartUvicorn) -> None:
    from contextlib import asynccontextmanager

    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        events.append("user startup")
        yield
        events.append("user shutdown")

    socket = chat_socket()
    socket.on_disconnect(lambda conn, reason: events.append(f"disconnect {reason}"))
    app = FastAPI(lifespan=lifespan)
    mount(socket, app, drain_on_signal=False)
    server = await start_uvicorn(app)
    assert socket.started and events == ["user startup"]
    await server.stop()
    assert events == ["user startup", "user shutdown"]


BAD_APP = """
from fastapi import FastAPI
import socketspec
from socketspec import SocketApp
from socketspec.adapters.fastapi import mount

socket = SocketApp()

@socket.on("__ping__")
async def reserved(conn, payload):
    return None

app = FastAPI()
mount(socket, app)
"""


def test_startup_validation_stops_the_server(
    tmp_path: Path, spawn_uvicorn: Callable[..., UvicornProcess]
) -> None:
    (tmp_path / "main.py").write_text(BAD_APP)
    server = spawn_uvicorn(["main:app"], tmp_path)
    assert server.process.wait(30) == 3  # uvicorn's startup failure
    assert "'__ping__' is a reserved system event" in server.output()


async def test_session_limits_close_with_4004_and_4003(start_uvicorn: StartUvicorn) -> None:
    idle = SessionConfig(idle_timeout=0.3, heartbeat_interval=0)
    server = await start_uvicorn(fastapi_app(chat_socket(session=idle)))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        assert await close_code(ws) == 4004
    expiring = SessionConfig(max_duration=0.5, heartbeat_interval=0, idle_timeout=0)
    server = await start_uvicorn(fastapi_app(chat_socket(session=expiring)))
    async with connect(server.ws + "/ws") as ws:
        await recv(ws)
        await send(ws, "echo", {"text": "busy"})  # activity does not extend the session
        assert await close_code(ws) == 4003


async def test_the_in_process_test_client_on_a_mounted_socket() -> None:
    socket = chat_socket()
    fastapi_app(socket)
    async with TestClient(socket).connect() as conn:
        await conn.emit("echo", {"text": "in process"})
        reply = await conn.receive("echo_response", timeout=2)
        assert reply == {"text": "in process", "from": conn.id}
