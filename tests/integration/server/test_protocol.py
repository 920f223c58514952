"""The WebSocket protocol over real sockets: reassembly, binary envelopes, the two size
limits, close codes for bad frames, Ping/Pong and the closing handshake, with the server
serving a healthy client after every bad input."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest
import websockets
from rawws import (
    HOST,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    RSV2,
    RSV3,
    Closed,
    RawWS,
    close_payload,
    encode_frame,
    envelope,
    upgrade_request,
)
from shardkit import EchoApp, assert_serving, disconnect_reason, echo_app

from socketspec.client import connect
from socketspec.server.shard import Shard

KIB = 1024


def split(data: bytes, parts: int) -> list[bytes]:
    step = -(-len(data) // parts)
    return [data[i : i + step] for i in range(0, len(data), step)]


def send_fragmented(raw: RawWS, opcode: int, data: bytes, parts: int) -> None:
    pieces = split(data, parts)
    for index, piece in enumerate(pieces):
        raw.send_frame(opcode if index == 0 else OP_CONT, piece, fin=index == len(pieces) - 1)


async def expect_close(raw: RawWS, code: int) -> None:
    """The server sends a Close frame with ``code``; answered like a client would, the server
    then ends the TCP connection."""
    try:
        frame = await raw.read_close(timeout=10)
        raw.send_frame(OP_CLOSE, close_payload(code))
        tail = await raw.read_eof(timeout=10)
    finally:
        await raw.aclose()
    assert frame.close_code == code, (frame.close_code, frame.close_reason)
    assert tail == b""


@pytest.fixture
async def app_and_port(start_shard) -> tuple[EchoApp, int]:
    """An echo app with a 1 KiB payload limit, on a shard with a 64 KiB hard limit."""
    app = echo_app(max_payload_size=1024)
    shard: Shard = await start_shard(app, max_message_size=64 * KIB)
    assert shard.port is not None
    return app, shard.port


# -- reassembly and binary envelopes -----------------------------------------------------------


async def test_a_fragmented_text_message_is_reassembled(app_and_port: tuple[EchoApp, int]) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    text = "é€ fragments " * 20
    data = envelope("echo", {"text": text}, ack=1)
    # cut inside the two bytes of "é" and inside the three bytes of "€"
    cut_e = data.index("é".encode()) + 1
    cut_euro = data.index("€".encode()) + 2
    pieces = [data[:cut_e], data[cut_e:cut_euro], *split(data[cut_euro:], 5)]
    for index, piece in enumerate(pieces):
        raw.send_frame(OP_TEXT if index == 0 else OP_CONT, piece, fin=index == len(pieces) - 1)
    reply = (await raw.read_event("__ack__")).get("payload")
    assert reply == {"text": text}
    await raw.aclose()


async def test_a_control_frame_between_fragments_is_answered_and_the_message_completes(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    first, second = split(envelope("echo", {"n": 7}, ack="a"), 2)
    raw.send_frame(OP_TEXT, first, fin=False)
    raw.send_frame(OP_PING, b"mid")
    raw.send_frame(OP_CONT, second, fin=True)
    frames = []
    while not (
        any(f.opcode == OP_PONG for f in frames) and any(b"__ack__" in f.payload for f in frames)
    ):
        frame = await raw.read_frame()
        if not (frame.opcode == OP_TEXT and b"__connect__" in frame.payload):
            frames.append(frame)
    assert [f.opcode for f in frames] in ([OP_PONG, OP_TEXT], [OP_TEXT, OP_PONG])
    assert frames[[f.opcode for f in frames].index(OP_PONG)].payload == b"mid"
    acks = [f.json() for f in frames if f.opcode == OP_TEXT]
    assert acks == [{"event": "__ack__", "ack": "a", "payload": {"n": 7}}]
    await raw.aclose()


async def test_a_frame_sent_with_the_upgrade_request_is_handled(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    reader, writer = await asyncio.open_connection(HOST, port)
    request, _ = upgrade_request(port)
    writer.write(request + encode_frame(OP_TEXT, envelope("echo", {"early": True}, ack=1)))
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
    raw = RawWS(reader, writer, {})
    assert (await raw.read_event("__ack__"))["payload"] == {"early": True}
    await raw.aclose()


async def test_a_json_envelope_in_a_binary_frame_is_handled_like_text(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    raw.send_frame(OP_BINARY, envelope("echo", {"bin": True}, ack=1))
    assert (await raw.read_event("__ack__"))["payload"] == {"bin": True}
    send_fragmented(raw, OP_BINARY, envelope("echo", {"bin": "fragmented"}, ack=2), 3)
    message = await raw.read_event("__ack__")
    assert message == {"event": "__ack__", "ack": 2, "payload": {"bin": "fragmented"}}
    await raw.aclose()


async def test_the_websockets_library_can_send_fragmented_text_and_binary(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        greeting = json.loads(await ws.recv())
        assert greeting["event"] == "__connect__"
        data = envelope("echo", {"via": "websockets"}, ack=1).decode()
        await ws.send([data[:10], data[10:25], data[25:]])
        assert json.loads(await ws.recv()) == {
            "event": "__ack__",
            "ack": 1,
            "payload": {"via": "websockets"},
        }
        binary = envelope("echo", {"via": "bytes"}, ack=2)
        await ws.send([binary[:5], binary[5:]])
        assert json.loads(await ws.recv())["payload"] == {"via": "bytes"}


# -- the soft limit (max_payload_size) ---------------------------------------------------------


async def test_a_message_over_max_payload_size_is_refused_and_the_connection_stays_open(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        await client.emit("echo", {"blob": "x" * 2000})
        error = await client.receive_error("PAYLOAD_TOO_LARGE")
        assert error["details"] == {"max_payload_size": 1024}
        assert await client.call("echo", {"after": 1}) == {"after": 1}
        # a message exactly at the limit is admitted
        body = envelope("echo", {"pad": ""}, ack="exact")
        exact = body.replace(b'"pad":""', b'"pad":"' + b"p" * (1024 - len(body)) + b'"')
        assert len(exact) == 1024
        await client.send_raw(exact.decode())
        assert (await client.receive_message("__ack__"))["ack"] == "exact"
        assert not client.closed


async def test_max_payload_size_counts_utf8_bytes_not_characters(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        # ~520 characters, ~1000 bytes: under the 1024-byte limit
        assert await client.call("echo", {"t": "é" * 480}) == {"t": "é" * 480}
        # ~630 characters (fewer than 1024), ~1230 bytes: over it
        await client.emit("echo", {"t": "é" * 600})
        assert (await client.receive_error())["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_fragmented_message_over_max_payload_size_is_refused_and_the_connection_stays_open(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    send_fragmented(raw, OP_TEXT, envelope("echo", {"blob": "y" * 3000}, ack=1), 6)
    error = await raw.read_event("__error__")
    assert error["payload"]["code"] == "PAYLOAD_TOO_LARGE"
    # the next message, fragmented too, is handled normally
    send_fragmented(raw, OP_TEXT, envelope("echo", {"n": 2}, ack=2), 3)
    assert (await raw.read_event("__ack__")) == {"event": "__ack__", "ack": 2, "payload": {"n": 2}}
    await raw.aclose()
    await assert_serving(port)


# -- the hard limit (--max-message-size) -------------------------------------------------------


async def test_a_frame_over_max_message_size_closes_with_1009(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(OP_TEXT, envelope("echo", {"blob": "z" * (70 * KIB)}))
    await expect_close(raw, 1009)
    assert await disconnect_reason(app, conn_id) == "message_too_big"
    await assert_serving(port)


async def test_a_fragmented_message_over_max_message_size_closes_with_1009(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    for index in range(10):  # ten 8 KiB fragments: each is fine, the message is not
        raw.send_frame(OP_TEXT if index == 0 else OP_CONT, b"w" * (8 * KIB), fin=False)
    await expect_close(raw, 1009)
    assert await disconnect_reason(app, conn_id) == "message_too_big"
    await assert_serving(port)


# -- bad frames --------------------------------------------------------------------------------


async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(OP_TEXT, b'{"event":"echo","payload":{"s":"\xff\xfe"}}')
    await expect_close(raw, 1007)
    assert await disconnect_reason(app, conn_id) == "invalid_utf8"
    await assert_serving(port)


async def test_invalid_utf8_split_across_fragments_closes_with_1007(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(OP_TEXT, b'{"event":"echo","payload":{"s":"\xe2\x82', fin=False)
    raw.send_frame(OP_CONT, b'("}}', fin=True)  # \xe2\x82 followed by "(" is not UTF-8
    await expect_close(raw, 1007)
    assert await disconnect_reason(app, conn_id) == "invalid_utf8"
    await assert_serving(port)


BAD_FRAMES = {
    "unmasked": dict(opcode=OP_TEXT, payload=envelope("echo"), mask=False),
    "reserved data opcode": dict(opcode=0x3, payload=b"x"),
    "reserved control opcode": dict(opcode=0xB, payload=b""),
    "rsv1 without an extension": dict(opcode=OP_TEXT, payload=envelope("echo"), rsv=RSV1),
    "rsv2": dict(opcode=OP_TEXT, payload=envelope("echo"), rsv=RSV2),
    "rsv3": dict(opcode=OP_TEXT, payload=envelope("echo"), rsv=RSV3),
    "continuation without a start": dict(opcode=OP_CONT, payload=b"x"),
    "fragmented ping": dict(opcode=OP_PING, payload=b"x", fin=False),
    "ping over 125 bytes": dict(opcode=OP_PING, payload=b"p" * 126),
    "close with a 1-byte payload": dict(opcode=OP_CLOSE, payload=b"\x03"),
    "close with code 1005": dict(opcode=OP_CLOSE, payload=struct.pack("!H", 1005)),
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_a_protocol_violation_closes_with_1002(
    app_and_port: tuple[EchoApp, int], frame: dict[str, object]
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(**frame)  # type: ignore[arg-type]
    await expect_close(raw, 1002)
    assert await disconnect_reason(app, conn_id) == "protocol_error"
    await assert_serving(port)


async def test_a_new_data_frame_while_a_message_is_unfinished_closes_with_1002(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(OP_TEXT, b'{"event":', fin=False)
    raw.send_frame(OP_TEXT, envelope("echo"), fin=True)
    await expect_close(raw, 1002)
    assert await disconnect_reason(app, conn_id) == "protocol_error"
    await assert_serving(port)


# -- control frames and the closing handshake ---------------------------------------------------


async def test_a_protocol_ping_gets_a_pong_with_the_same_payload(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    raw.send_frame(OP_PING, b"hello?")
    while (frame := await raw.read_frame()).opcode != OP_PONG:
        assert frame.opcode == OP_TEXT
    assert frame.payload == b"hello?"
    raw.send_frame(OP_PONG, b"unsolicited")  # allowed, and ignored
    raw.send_event("echo", {"after": "pong"}, ack=1)
    assert (await raw.read_event("__ack__"))["payload"] == {"after": "pong"}
    await raw.aclose()
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        assert await client.ping(b"rtt") >= 0


async def test_a_client_close_is_answered_with_a_close_frame_and_the_server_ends_tcp(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.send_frame(OP_CLOSE, close_payload(1000, "bye"))
    frame = await raw.read_close()
    assert frame.close_code == 1000
    assert await raw.read_eof() == b""
    await raw.aclose()
    async with connect(f"ws://127.0.0.1:{port}/ws") as client:
        await client.close(4321, "done")
        assert client.close_code == 4321
    assert app.disconnects[conn_id] == "client_close"


async def test_the_websockets_library_sees_a_clean_close(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws")
    await ws.recv()
    await ws.close(1000, "bye")
    assert ws.close_code == 1000
    received = ws.protocol.close_rcvd
    assert received is not None and received.code == 1000  # the server answered our Close
    assert ws.protocol.close_rcvd_then_sent is False  # ... after we sent ours


async def test_an_empty_close_frame_is_answered_with_an_empty_close(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    raw.send_frame(OP_CLOSE, b"")
    frame = await raw.read_close()
    assert frame.payload in (b"", struct.pack("!H", 1000))
    assert await raw.read_eof() == b""
    await raw.aclose()


async def test_a_connection_dropped_without_a_close_frame_is_cleaned_up(
    app_and_port: tuple[EchoApp, int],
) -> None:
    app, port = app_and_port
    raw = await RawWS.open(port)
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    raw.writer.transport.abort()
    assert await disconnect_reason(app, conn_id) == "connection_lost"
    assert app.connections == []


async def test_after_a_close_frame_the_server_handles_no_more_messages(
    app_and_port: tuple[EchoApp, int],
) -> None:
    _, port = app_and_port
    raw = await RawWS.open(port)
    raw.send_frame(OP_CLOSE, close_payload(1000))
    raw.send_frame(OP_TEXT, envelope("echo", {}, ack=1))
    frames = []
    try:
        while True:
            frames.append(await raw.read_frame())
    except Closed:
        pass
    assert [f.opcode for f in frames if f.opcode != OP_TEXT or b"__ack__" in f.payload] == [
        OP_CLOSE
    ]
    await raw.aclose()


async def test_echo_mode_echoes_text_and_binary_messages(start_shard) -> None:
    shard: Shard = await start_shard(None, max_message_size=64 * KIB)
    assert shard.port is not None
    raw = await RawWS.open(shard.port, "/anything")
    send_fragmented(raw, OP_TEXT, "héllo wörld".encode(), 4)
    frame = await raw.read_frame()
    assert (frame.opcode, frame.payload) == (OP_TEXT, "héllo wörld".encode())
    raw.send_frame(OP_BINARY, b"\x00\x01\xff")
    frame = await raw.read_frame()
    assert (frame.opcode, frame.payload) == (OP_BINARY, b"\x00\x01\xff")
    raw.send_frame(OP_BINARY, b"b" * (65 * KIB))
    await expect_close(raw, 1009)
