"""The ASGI entry driven by ASGI messages in memory: the lifespan, the HTTP answers on the
socket's paths, refusals before the accept, one connection's messages both ways, and the
connection's phases. (Real servers: tests/integration/adapters.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from socketspec import SocketApp
from socketspec.adapters.asgi import ASGIConnection, Phase, SocketASGI, with_socket

Message = dict[str, Any]


class Peer:
    """The server side of one ASGI call: what the entry receives, and what it sent."""

    def __init__(self, *incoming: Message) -> None:
        self.incoming: asyncio.Queue[Message] = asyncio.Queue()
        for message in incoming:
            self.incoming.put_nowait(message)
        self.sent: list[Message] = []
        self.sent_event = asyncio.Event()

    async def receive(self) -> Message:
        return await self.incoming.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.sent_event.set()

    async def next_sent(self, kind: str, timeout: float = 2.0) -> Message:
        async with asyncio.timeout(timeout):
            while True:
                for message in self.sent:
                    if message["type"] == kind:
                        self.sent.remove(message)
                        return message
                self.sent_event.clear()
                await self.sent_event.wait()


def echo_socket(**settings: Any) -> SocketApp:
    socket = SocketApp(**settings)

    @socket.on("echo")
    async def echo(conn: Any, payload: dict[str, Any]) -> dict[str, Any]:
        return payload

    return socket


def http_scope(path: str, method: str = "GET", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "path": path, "method": method, "headers": [], **extra}


def ws_scope(path: str = "/ws", **extra: Any) -> dict[str, Any]:
    return {"type": "websocket", "path": path, "headers": [], "query_string": b"", **extra}


async def status_of(app: Callable[..., Awaitable[None]], scope: dict[str, Any]) -> int:
    peer = Peer({"type": "http.request", "body": b""})
    await app(scope, peer.receive, peer.send)
    status: int = (await peer.next_sent("http.response.start"))["status"]
    return status


async def test_lifespan_starts_and_drains() -> None:
    entry = SocketASGI(echo_socket(), drain_on_signal=False)
    peer = Peer({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    await entry({"type": "lifespan"}, peer.receive, peer.send)
    assert [m["type"] for m in peer.sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert entry.socket is not None and entry.socket.started


async def test_lifespan_reports_a_registration_problem_and_serves_nothing() -> None:
    socket = SocketApp()

    @socket.on("__ping__")
    async def reserved(conn: Any) -> None:
        return None

    entry = SocketASGI(socket, drain_on_signal=False)
    peer = Peer({"type": "lifespan.startup"})
    await entry({"type": "lifespan"}, peer.receive, peer.send)
    (failed,) = peer.sent
    assert failed["type"] == "lifespan.startup.failed"
    assert failed["message"].startswith("ReservedEventNameError: '__ping__'")


async def test_http_on_the_sockets_paths() -> None:
    entry = SocketASGI(echo_socket(docs=True), drain_on_signal=False)
    assert await status_of(entry, http_scope("/ws")) == 426
    assert await status_of(entry, http_scope("/ws", "POST")) == 405
    assert await status_of(entry, http_scope("/elsewhere")) == 404
    assert await status_of(entry, http_scope("/socket-docs")) == 200
    peer = Peer()
    await entry(http_scope("/asyncapi.json", "HEAD"), peer.receive, peer.send)
    assert (await peer.next_sent("http.response.body"))["body"] == b""


async def test_with_socket_hands_everything_else_to_the_app() -> None:
    reached: list[str] = []

    async def other(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    combined = with_socket(other, echo_socket())
    assert await status_of(combined, http_scope("/api/items")) == 204
    assert await status_of(combined, http_scope("/ws")) == 426
    assert reached == ["/api/items"]


@pytest.mark.parametrize("extensions", [{"websocket.http.response": {}}, {}])
async def test_an_unserved_path_is_refused_before_the_accept(extensions: dict[str, Any]) -> None:
    entry = SocketASGI(echo_socket(), drain_on_signal=False)
    peer = Peer({"type": "websocket.connect"})
    await entry(ws_scope("/ws/no-namespace", extensions=extensions), peer.receive, peer.send)
    if extensions:
        assert (await peer.next_sent("websocket.http.response.start"))["status"] == 404
    else:  # the server answers 403 itself
        assert [m["type"] for m in peer.sent] == ["websocket.close"]


async def test_a_refused_origin_is_403_before_the_accept() -> None:
    entry = SocketASGI(echo_socket(allowed_origins=["https://a.example"]), drain_on_signal=False)
    peer = Peer({"type": "websocket.connect"})
    scope = ws_scope(
        headers=[(b"origin", b"https://b.example")],
        extensions={"websocket.http.response": {}},
    )
    await entry(scope, peer.receive, peer.send)
    start = await peer.next_sent("websocket.http.response.start")
    body = await peer.next_sent("websocket.http.response.body")
    assert start["status"] == 403 and body["body"].startswith(b"forbidden")


async def test_a_connection_greets_answers_and_ends() -> None:
    socket = echo_socket()
    reasons: list[str] = []
    socket.on_disconnect(lambda conn, reason: reasons.append(reason))
    entry = SocketASGI(socket, drain_on_signal=False)
    peer = Peer({"type": "websocket.connect"})
    serving = asyncio.ensure_future(entry(ws_scope(), peer.receive, peer.send))
    await peer.next_sent("websocket.accept")
    greeting = json.loads((await peer.next_sent("websocket.send"))["text"])
    assert greeting["event"] == "__connect__"
    message = {"event": "echo", "payload": {"n": 1}, "ack": 9}
    await peer.incoming.put({"type": "websocket.receive", "text": json.dumps(message)})
    ack = json.loads((await peer.next_sent("websocket.send"))["text"])
    assert ack == {"event": "__ack__", "ack": 9, "payload": {"n": 1}}
    await peer.incoming.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(serving, 2)
    assert reasons == ["client_close"]
    assert socket.connections == []


async def test_a_message_above_max_message_size_closes_with_1009() -> None:
    entry = SocketASGI(echo_socket(), max_message_size=100, drain_on_signal=False)
    peer = Peer({"type": "websocket.connect"})
    serving = asyncio.ensure_future(entry(ws_scope(), peer.receive, peer.send))
    await peer.next_sent("websocket.send")  # the greeting
    await peer.incoming.put({"type": "websocket.receive", "text": "x" * 101})
    assert (await peer.next_sent("websocket.close"))["code"] == 1009
    await peer.incoming.put({"type": "websocket.disconnect", "code": 1009})
    await asyncio.wait_for(serving, 2)


async def test_the_connections_phases() -> None:
    entry = SocketASGI(echo_socket(), drain_on_signal=False)
    peer = Peer()
    connection = ASGIConnection(entry, peer.send)
    assert connection.phase is Phase.CONNECTING
    await connection.accept()
    connection.close_now(1000, "bye")
    assert connection.phase is Phase.CLOSING
    connection.close_now(1001, "again")  # once closing, a second close changes nothing
    connection.write(b'{"event":"late"}')  # and nothing more is queued
    await asyncio.wait_for(connection.write_loop(), 2)
    assert [m["type"] for m in peer.sent] == ["websocket.accept", "websocket.close"]
    assert peer.sent[-1]["code"] == 1000
    connection.finished()
    assert connection.phase is Phase.CLOSED
    with pytest.raises(RuntimeError, match="from closed to open"):
        await connection.accept()
    assert peer.sent[-1]["type"] == "websocket.close"  # nothing was sent


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_outbound"):
        SocketASGI(None, max_outbound=0)
    with pytest.raises(ValueError, match="max_message_size"):
        SocketASGI(None, max_message_size=0)
    with pytest.raises(ValueError, match="must start with '/'"):
        SocketASGI(None, path="ws")


async def test_past_max_outbound_the_backlog_is_dropped_and_the_close_is_4008() -> None:
    entry = SocketASGI(echo_socket(), max_outbound=100, drain_on_signal=False)
    peer = Peer()
    connection = ASGIConnection(entry, peer.send)
    await connection.accept()
    connection.write(b"x" * 60)
    connection.write(b"y" * 60)  # 120 bytes waiting: past the bound
    connection.write(b"z" * 10)  # closing: not queued
    assert connection.phase is Phase.CLOSING
    await asyncio.wait_for(connection.write_loop(), 2)
    assert [m["type"] for m in peer.sent] == ["websocket.accept", "websocket.close"]
    assert peer.sent[-1]["code"] == 4008
