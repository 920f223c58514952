"""permessage-deflate over real sockets: a compressing client works, a message that inflates
past max_payload_size is refused without losing the compression context, and a deflate bomb
closes with 1009 while the server keeps serving others."""

from __future__ import annotations

import json
import zlib

import pytest
import websockets
from rawws import OP_CONT, OP_TEXT, RSV1, RawWS, envelope
from shardkit import EchoApp, assert_serving, disconnect_reason, echo_app

from socketspec.server.shard import Shard

MIB = 1024 * 1024


def deflate(data: bytes, compressor: zlib._Compress | None = None) -> bytes:
    """One permessage-deflate message body: raw deflate, sync-flushed, tail stripped."""
    compressor = compressor or zlib.compressobj(wbits=-15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


@pytest.fixture
async def compressed(start_shard) -> tuple[EchoApp, int]:
    app = echo_app(max_payload_size=1024)
    shard: Shard = await start_shard(app, compression=True, max_message_size=1 * MIB)
    assert shard.port is not None
    return app, shard.port


async def test_a_permessage_deflate_client_works(compressed: tuple[EchoApp, int]) -> None:
    _, port = compressed
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        assert json.loads(await ws.recv())["event"] == "__connect__"
        for n in range(5):  # context takeover: later messages reuse the window
            text = "compress me " * 60  # ~720 bytes, well under the limit
            await ws.send(envelope("echo", {"n": n, "text": text}, ack=n).decode())
            reply = json.loads(await ws.recv())
            assert reply == {"event": "__ack__", "ack": n, "payload": {"n": n, "text": text}}
        # a fragmented compressed message
        data = envelope("echo", {"fragmented": True}, ack="f").decode()
        await ws.send([data[:9], data[9:]])
        assert json.loads(await ws.recv())["payload"] == {"fragmented": True}


async def test_a_compressed_message_over_max_payload_size_is_refused_and_the_next_still_inflates(
    compressed: tuple[EchoApp, int],
) -> None:
    _, port = compressed
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression="deflate") as ws:
        await ws.recv()  # __connect__
        await ws.send(envelope("echo", {"blob": "q" * 50_000}, ack=1).decode())
        error = json.loads(await ws.recv())
        assert error["event"] == "__error__"
        assert error["payload"]["code"] == "PAYLOAD_TOO_LARGE"
        # the shared compression context survived the discarded message
        for n in range(3):
            await ws.send(envelope("echo", {"blob": "q" * 500, "n": n}, ack=2 + n).decode())
            assert json.loads(await ws.recv())["payload"] == {"blob": "q" * 500, "n": n}


async def test_a_deflate_bomb_closes_with_1009_and_the_server_serves_others(
    compressed: tuple[EchoApp, int],
) -> None:
    app, port = compressed
    raw = await RawWS.open(port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert "permessage-deflate" in raw.response_headers.get("sec-websocket-extensions", "")
    conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
    bomb = deflate(b"\x00" * (64 * MIB))
    assert len(bomb) < 100 * 1024  # small on the wire, 64 MiB once inflated
    raw.send_frame(OP_TEXT, bomb, rsv=RSV1)
    frame = await raw.read_close(timeout=15)
    assert frame.close_code == 1009
    assert await raw.read_eof() == b""
    await raw.aclose()
    assert conn_id not in [c.id for c in app.connections]
    await assert_serving(port)


async def test_a_deflate_bomb_is_reported_to_on_disconnect_like_any_message_too_big(
    compressed: tuple[EchoApp, int],
) -> None:
    app, port = compressed
    reasons = []
    for bomb in (False, True):
        raw = await RawWS.open(port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        conn_id = (await raw.read_event("__connect__"))["payload"]["conn_id"]
        if bomb:
            raw.send_frame(OP_TEXT, deflate(b"\x00" * (4 * MIB)), rsv=RSV1)
        else:
            raw.send_frame(OP_TEXT, b"\x00" * (2 * MIB))  # uncompressed, over the hard limit
        assert (await raw.read_close()).close_code == 1009
        await raw.aclose()
        reasons.append(await disconnect_reason(app, conn_id))
    assert reasons == ["message_too_big", "message_too_big"]


async def test_a_fragmented_deflate_bomb_closes_with_1009(compressed: tuple[EchoApp, int]) -> None:
    _, port = compressed
    raw = await RawWS.open(port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    await raw.read_event("__connect__")
    bomb = deflate(b"\x00" * (16 * MIB))
    pieces = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]
    for index, piece in enumerate(pieces):
        raw.send_frame(
            OP_TEXT if index == 0 else OP_CONT,
            piece,
            fin=index == len(pieces) - 1,
            rsv=RSV1 if index == 0 else 0,
        )
    frame = await raw.read_close(timeout=15)
    assert frame.close_code == 1009
    await raw.aclose()
    await assert_serving(port)


async def test_a_corrupt_compressed_message_closes_the_connection(
    compressed: tuple[EchoApp, int],
) -> None:
    _, port = compressed
    raw = await RawWS.open(port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    await raw.read_event("__connect__")
    raw.send_frame(OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=RSV1)
    frame = await raw.read_close(timeout=10)
    assert frame.close_code in (1002, 1007)
    await raw.aclose()
    await assert_serving(port)


async def test_without_compression_a_deflate_client_is_served_uncompressed(start_shard) -> None:
    shard = await start_shard(echo_app())
    url = f"ws://127.0.0.1:{shard.port}/ws"
    async with websockets.connect(url, compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        await ws.recv()
        await ws.send(envelope("echo", {"plain": 1}, ack=1).decode())
        assert json.loads(await ws.recv())["payload"] == {"plain": 1}
    # a compressed frame the server never agreed to is a protocol error
    assert shard.port is not None
    raw = await RawWS.open(shard.port, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert "sec-websocket-extensions" not in raw.response_headers
    raw.send_frame(OP_TEXT, deflate(envelope("echo")), rsv=RSV1)
    assert (await raw.read_close()).close_code == 1002
    await raw.aclose()
