"""socketspec.client against real servers on 127.0.0.1.

Most tests talk to a small ``websockets`` server that speaks the wire protocol: a
``__connect__`` greeting, acks and errors, ``__ping__`` events, refusals with HTTP 403
(process_request) and with ``__error__`` + close 4001. One test uses a wsproto server
that never answers Ping or Close frames, to show what the client does when nobody does.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from pydantic import BaseModel
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.exceptions import ConnectionClosed as ServerSideClosed
from wsproto import ConnectionType, WSConnection
from wsproto import events as wse

from socketspec import client as client_module
from socketspec.client import (
    ConnectionClosed,
    ConnectRefused,
    ErrorReply,
    connect,
)

GOOD_TOKEN = "good token/+"  # needs quoting in a query string
GREETING = {
    "conn_id": "conn-1",
    "namespace": "/",
    "user_id": "u1",
    "heartbeat_interval": 25,
    "heartbeat_timeout": 60,
}

# A self-signed certificate for localhost and 127.0.0.1, valid 2000-2100, and its key.
CERT_PEM = """-----BEGIN CERTIFICATE-----
MIIBdjCCAR2gAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwIBcNMDAwMTAxMDAwMDAwWhgPMjEwMDAxMDEwMDAwMDBaMBQxEjAQBgNVBAMM
CWxvY2FsaG9zdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGj3Br67AzHZLDNK
QZGa1km/gijUeqK2B0g65TgUUgTIH3gDaoc/TfNV6TbTSipRmvfBl09j6blVceOs
UVK5NQKjXjBcMBoGA1UdEQQTMBGCCWxvY2FsaG9zdIcEfwAAATAPBgNVHRMBAf8E
BTADAQH/MA4GA1UdDwEB/wQEAwIChDAdBgNVHQ4EFgQU2uV95NIlpaJzBT/Ndb9I
pq37o0AwCgYIKoZIzj0EAwIDRwAwRAIgP7LFRwqwjBQgWh0n4GJMGGF/47y0aofs
ZIOobkXaMx8CIFnSKd+msiorc+r878CCMZI1u7DyAFusWWiOv91o6IRO
-----END CERTIFICATE-----
"""
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgOgfyKIJFvZIdCr7H
Sv0UucKNIuIhFgRDwRuGHLm8bIWhRANCAARo9wa+uwMx2SwzSkGRmtZJv4Io1Hqi
tgdIOuU4FFIEyB94A2qHP03zVek200oqUZr3wZdPY+m5VXHjrFFSuTUC
-----END PRIVATE KEY-----
"""


def dumps(event: str, payload: Any = None, ack: Any = None) -> str:
    body: dict[str, Any] = {"event": event, "payload": {} if payload is None else payload}
    if ack is not None:
        body["ack"] = ack
    return orjson.dumps(body).decode()


class Server:
    """The server side of the tests: what it received and how each connection closed."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Request] = []
        self.received: list[str | bytes] = []
        self.closes: asyncio.Queue[tuple[int | None, str | None]] = asyncio.Queue()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/forbidden"):
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.requests.append(ws.request)
        query = parse_qs(urlsplit(ws.request.path).query)
        if query.get("token") != [GOOD_TOKEN]:
            await ws.send(
                dumps("__error__", {"code": "AUTH_ERROR", "event": None, "message": "bad token"})
            )
            await ws.close(4001, "authentication failed")
            return
        await ws.send(dumps("__connect__", GREETING))
        try:
            async for message in ws:
                self.received.append(message)
                await self.answer(ws, message)
        except ServerSideClosed:
            pass
        finally:
            self.closes.put_nowait((ws.close_code, ws.close_reason))

    async def answer(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            body = orjson.loads(message)
        except orjson.JSONDecodeError:
            kind = "text" if isinstance(message, str) else "binary"
            await ws.send(dumps("raw_seen", {"kind": kind, "length": len(message)}))
            return
        event, payload, ack = body.get("event"), body.get("payload"), body.get("ack")
        if event == "echo":
            await ws.send(dumps("echo", payload))
        elif event == "add":
            await ws.send(dumps("noise", {"n": 1}))  # arrives before the ack
            await ws.send(dumps("__ack__", {"sum": payload["a"] + payload["b"]}, ack))
        elif event == "fail":
            error = {"code": "VALIDATION_ERROR", "event": "fail", "message": "Invalid"}
            await ws.send(dumps("__error__", error, ack))
        elif event == "burst":
            await ws.send(dumps("__ping__", {"ts": 1}))
            for name in ("a", "b", "c"):
                await ws.send(dumps(name, {"name": name}))
        elif event == "send_ping":
            await ws.send(dumps("__ping__", {"ts": 2}))
        elif event == "pongs":
            pongs = [m for m in self.received if m == '{"event":"__pong__"}']
            await ws.send(dumps("__ack__", {"count": len(pongs)}, ack))
        elif event == "server_ping":
            waiter = await ws.ping(b"from-server")
            try:
                await asyncio.wait_for(waiter, 1.0)
            except TimeoutError:
                await ws.send(dumps("server_ping_lost"))
            else:
                await ws.send(dumps("server_ping_ok"))
        elif event == "fragments":
            text = dumps("frag", {"text": "x" * 300})
            await ws.send([text[i : i + 100] for i in range(0, len(text), 100)])
            await ws.send([b"\x00\x01", b"\x02", b"\xff"])
        elif event == "non_json":
            await ws.send("hello, not json")
            await ws.send("[1, 2]")
        elif event == "big":
            await ws.send(dumps("before_big"))
            await ws.send(["y" * 500] * payload["chunks"])
        elif event == "kick":
            await ws.send(dumps("goodbye"))
            await ws.close(4008, "slow_consumer")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serve(
        state.handler,
        "127.0.0.1",
        0,
        process_request=state.process_request,
        ping_interval=None,
    ) as running:
        port = running.sockets[0].getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/ws"
        yield state


async def server_close(server: Server) -> tuple[int | None, str | None]:
    return await asyncio.wait_for(server.closes.get(), 2.0)


# -- opening -----------------------------------------------------------------------------------


async def test_connect_waits_for_the_greeting(server: Server) -> None:
    async with connect(
        server.url + "?room=lobby",
        token=GOOD_TOKEN,
        origin="http://app.example",
        headers={"X-Trace": "t-1", "Origin": "http://ignored.example"},
    ) as client:
        assert client.conn_id == "conn-1"
        assert client.greeting == GREETING
        assert not client.closed
        assert client.close_code is None
        # The greeting is kept like TestConnection keeps it; receive() skips it.
        assert await client.receive("__connect__") == GREETING
    request = server.requests[0]
    url = urlsplit(request.path)
    assert url.path == "/ws"
    assert parse_qs(url.query) == {"room": ["lobby"], "token": [GOOD_TOKEN]}
    assert request.headers["Origin"] == "http://app.example"
    assert request.headers.get_all("Origin") == ["http://app.example"]
    assert request.headers["X-Trace"] == "t-1"
    assert request.headers["Host"] == urlsplit(server.url).netloc


async def test_await_form_and_close_handshake_code_seen_by_server(server: Server) -> None:
    client = await connect(server.url, token=GOOD_TOKEN)
    await client.close(4000, "done here")
    assert await server_close(server) == (4000, "done here")
    assert client.closed
    assert client.close_code == 4000
    assert client.close_reason == "done here"
    await client.close()  # idempotent
    assert client.close_code == 4000


async def test_async_with_closes_with_1000_on_exit(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        pass
    assert client.closed
    assert await server_close(server) == (1000, "")


async def test_refused_upgrade_carries_status_and_body(server: Server) -> None:
    forbidden = server.url.replace("/ws", "/forbidden")
    with pytest.raises(ConnectRefused) as info:
        await connect(forbidden, token=GOOD_TOKEN)
    assert info.value.status == 403
    assert info.value.body == "origin not allowed\n"
    assert info.value.close_code is None
    assert info.value.error is None
    assert server.requests == []


async def test_auth_failure_carries_close_code_and_error(server: Server) -> None:
    with pytest.raises(ConnectRefused) as info:
        async with connect(server.url, token="wrong"):
            raise AssertionError("must not be reached")
    assert info.value.status is None
    assert info.value.close_code == 4001
    assert info.value.close_reason == "authentication failed"
    assert info.value.error is not None
    assert info.value.error["code"] == "AUTH_ERROR"
    assert "AUTH_ERROR" in str(info.value)


async def test_tls_connection(server: Server, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(CERT_PEM)
    key.write_text(KEY_PEM)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cadata=CERT_PEM)
    async with serve(server.handler, "127.0.0.1", 0, ssl=server_ctx, ping_interval=None) as tls:
        port = tls.sockets[0].getsockname()[1]
        async with connect(f"wss://127.0.0.1:{port}/ws", token=GOOD_TOKEN, ssl=client_ctx) as c:
            assert c.conn_id == "conn-1"
            assert await c.call("add", {"a": 2, "b": 3}) == {"sum": 5}
        assert await server_close(server) == (1000, "")
        # Without the certificate in the trust store, the handshake fails.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(f"wss://127.0.0.1:{port}/ws", token=GOOD_TOKEN)


async def test_bad_arguments_are_rejected_before_connecting() -> None:
    with pytest.raises(ValueError, match="ws://"):
        connect("http://127.0.0.1:1/ws")
    with pytest.raises(ValueError, match="wss://"):
        connect("ws://127.0.0.1:1/ws", ssl=ssl.create_default_context())
    with pytest.raises(ValueError, match="Sec-WebSocket-Key"):
        connect("ws://127.0.0.1:1/ws", headers={"Sec-WebSocket-Key": "x"})


# -- sending and receiving ---------------------------------------------------------------------


class Note(BaseModel):
    text: str


async def test_emit_sends_the_envelope_and_receive_gets_the_payload(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.emit("echo", {"x": 1})
        assert await client.receive("echo") == {"x": 1}
        await client.emit("echo", Note(text="hi"), ack=7)
        assert await client.receive("echo") == {"text": "hi"}
        await client.emit("echo")
        assert await client.receive() == {"event": "echo", "payload": {}}
    sent = [orjson.loads(m) for m in server.received]
    assert sent == [
        {"event": "echo", "payload": {"x": 1}},
        {"event": "echo", "payload": {"text": "hi"}, "ack": 7},
        {"event": "echo", "payload": {}},
    ]
    assert all(isinstance(m, str) for m in server.received)  # text frames


async def test_send_raw_sends_text_and_binary_verbatim(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.send_raw("not json {")
        assert await client.receive("raw_seen") == {"kind": "text", "length": 10}
        await client.send_raw(b"\x00\x01\x02")
        assert await client.receive("raw_seen") == {"kind": "binary", "length": 3}
    assert server.received == ["not json {", b"\x00\x01\x02"]


async def test_receive_skips_housekeeping_and_buffers_other_events(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN, auto_pong=False) as client:
        await client.emit("burst")
        assert await client.receive("c") == {"name": "c"}
        # a and b were kept, in order; __ping__ (and __connect__) are skipped by receive().
        assert await client.receive() == {"event": "a", "payload": {"name": "a"}}
        assert await client.receive_message("b") == {"event": "b", "payload": {"name": "b"}}
        assert await client.receive("__ping__") == {"ts": 1}
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.05)


async def test_call_returns_the_ack_payload_and_keeps_other_messages(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        assert await client.call("add", {"a": 1, "b": 2}) == {"sum": 3}
        assert await client.call("add", {"a": 5, "b": 5}) == {"sum": 10}
        assert await client.receive("noise") == {"n": 1}
        assert await client.receive("noise") == {"n": 1}
    acks = [orjson.loads(m)["ack"] for m in server.received]
    assert len(set(acks)) == 2  # a fresh ack id per call


async def test_call_raises_error_reply_on_error_with_its_ack(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        with pytest.raises(ErrorReply) as info:
            await client.call("fail", {})
        assert info.value.code == "VALIDATION_ERROR"
        assert info.value.payload["event"] == "fail"
        await client.emit("fail", {}, ack="mine")
        error = await client.receive_error("VALIDATION_ERROR")
        assert error["message"] == "Invalid"


async def test_timeout_names_the_event(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="never_sent"):
            await client.receive("never_sent", timeout=0.1)
        assert 0.09 <= time.monotonic() - started < 1.0
        with pytest.raises(TimeoutError, match="__error__ AUTH_ERROR"):
            await client.receive_error("AUTH_ERROR", timeout=0.05)


async def test_fragmented_messages_are_reassembled(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.emit("fragments")
        assert await client.receive("frag") == {"text": "x" * 300}
        assert await client.receive() == {"event": None, "raw": b"\x00\x01\x02\xff"}


async def test_non_json_text_is_kept_raw(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.emit("non_json")
        assert await client.receive() == {"event": None, "raw": "hello, not json"}
        assert await client.receive() == {"event": None, "raw": "[1, 2]"}


# -- heartbeats --------------------------------------------------------------------------------


async def test_auto_pong_answers_every_ping_event(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.emit("send_ping")
        await client.emit("send_ping")
        assert await client.receive("__ping__") == {"ts": 2}
        assert await client.receive("__ping__") == {"ts": 2}
        # The pongs were written as the pings arrived, so before this call.
        assert await client.call("pongs") == {"count": 2}


async def test_no_pong_event_without_auto_pong(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN, auto_pong=False) as client:
        await client.emit("send_ping")
        assert await client.receive("__ping__") == {"ts": 2}
        assert await client.call("pongs") == {"count": 0}


async def test_protocol_ping_round_trip(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        rtt = await client.ping(b"abc")
        assert isinstance(rtt, float)
        assert 0 <= rtt < 1.0
        assert await client.ping() >= 0


async def test_protocol_ping_from_the_server_is_answered(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN, auto_pong=False) as client:
        await client.emit("server_ping")
        message = await client.receive(timeout=2.0)
        assert message["event"] == "server_ping_ok"


@pytest.fixture
async def silent_url() -> AsyncIterator[str]:
    """A server that accepts and greets, then ignores everything, Ping and Close included."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            while data := await reader.read(65536):
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, wse.Request):
                        writer.write(ws.send(wse.AcceptConnection()))
                        writer.write(ws.send(wse.TextMessage(data=dumps("__connect__", GREETING))))
        finally:
            writer.close()

    silent = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with silent:
        yield f"ws://127.0.0.1:{silent.sockets[0].getsockname()[1]}/ws"


async def test_ping_waits_for_the_pong_and_close_gives_up_on_a_silent_server(
    silent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_TIMEOUT", 0.2)
    client = await connect(silent_url)
    assert client.conn_id == "conn-1"
    with pytest.raises(TimeoutError, match="Pong"):
        await client.ping(b"?", timeout=0.1)
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 1.0
    assert client.closed
    assert client.close_code == 1000


# -- closing -----------------------------------------------------------------------------------


async def test_wait_closed_returns_the_servers_close_code(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        await client.emit("kick")
        assert await client.wait_closed() == 4008
        assert client.closed
        assert client.close_reason == "slow_consumer"
        # A message sent before the close is still there; after it, ConnectionClosed.
        assert await client.receive("goodbye") == {}
        with pytest.raises(ConnectionClosed) as info:
            await client.receive("goodbye")
        assert (info.value.code, info.value.reason) == (4008, "slow_consumer")
    # The client answered the server's Close: a clean close on the server's side too.
    assert await server_close(server) == (4008, "slow_consumer")


async def test_wait_closed_times_out_while_open(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN) as client:
        with pytest.raises(TimeoutError, match="not closed"):
            await client.wait_closed(timeout=0.05)


async def test_connection_closed_after_close(server: Server) -> None:
    client = await connect(server.url, token=GOOD_TOKEN)
    await client.close()
    with pytest.raises(ConnectionClosed) as info:
        await client.receive()
    assert info.value.code == 1000
    with pytest.raises(ConnectionClosed):
        await client.emit("echo", {"x": 1})
    with pytest.raises(ConnectionClosed):
        await client.call("add", {"a": 1, "b": 1})
    with pytest.raises(ConnectionClosed):
        await client.ping()
    assert await server_close(server) == (1000, "")
    assert server.received == []


async def test_message_beyond_max_message_size_closes_with_1009(server: Server) -> None:
    async with connect(server.url, token=GOOD_TOKEN, max_message_size=1200) as client:
        await client.emit("big", {"chunks": 2})  # 1000 bytes in two fragments: fine
        assert await client.receive("before_big") == {}
        assert await client.receive() == {"event": None, "raw": "y" * 1000}
        await client.emit("big", {"chunks": 3})  # 1500 bytes: too big
        assert await client.wait_closed() == 1009
        assert await client.receive("before_big") == {}
        with pytest.raises(ConnectionClosed) as info:
            await client.receive()
        assert info.value.code == 1009
    assert await server_close(server) == (1009, "message too big")
