"""The HTTP side of the listener over real sockets: health answers, 404/426/400/431, the
handshake deadline, upgrade refusals (unknown path, Origin) and namespaces under the path."""

from __future__ import annotations

import asyncio
import json

import pytest
from rawws import HOST, RawWS, http_exchange, http_get, upgrade_request
from shardkit import assert_serving, echo_app

from socketspec import Connection
from socketspec.client import ConnectRefused, ErrorReply, connect
from socketspec.server.shard import Shard


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_health_endpoints_answer_json_200(echo_server: Shard, path: str) -> None:
    assert echo_server.port is not None
    response = await http_get(echo_server.port, path)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    document = json.loads(response.body)
    assert isinstance(document, dict)
    assert document["shard"] == 0
    if path == "/readyz":
        assert document["ready"] is True


async def test_unknown_path_is_404_and_a_plain_get_on_the_ws_path_is_426(
    echo_server: Shard,
) -> None:
    port = echo_server.port
    assert port is not None
    assert (await http_get(port, "/nope")).status == 404
    assert (await http_get(port, "/ws")).status == 426
    await assert_serving(port)


async def test_a_malformed_request_head_is_400(echo_server: Shard) -> None:
    port = echo_server.port
    assert port is not None
    response = await http_exchange(port, b"THIS IS NOT HTTP\r\n\r\n")
    assert response.status == 400
    await assert_serving(port)


async def test_request_headers_over_16_kib_are_431_when_the_head_arrives_whole(
    echo_server: Shard,
) -> None:
    port = echo_server.port
    assert port is not None
    response = await http_get(port, "/healthz", {"X-Padding": "a" * (17 * 1024)})
    assert response.status == 431
    await assert_serving(port)


async def test_request_headers_over_16_kib_are_431_while_the_head_is_still_arriving(
    echo_server: Shard,
) -> None:
    port = echo_server.port
    assert port is not None
    unfinished = b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Padding: " + b"a" * (17 * 1024)
    response = await http_exchange(port, unfinished)
    assert response.status == 431
    # just under the limit is still served
    assert (await http_get(port, "/healthz", {"X-Padding": "a" * (15 * 1024)})).status == 200
    await assert_serving(port)


async def test_a_client_that_never_finishes_its_handshake_is_dropped(start_shard) -> None:
    shard = await start_shard(echo_app(), handshake_timeout=0.5)
    assert shard.port is not None
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(HOST, shard.port)
    try:
        request, _ = upgrade_request(shard.port)
        writer.write(request[:40])  # half a request head, then silence
        started = loop.time()
        async with asyncio.timeout(10):
            leftover = await reader.read()
        elapsed = loop.time() - started
    finally:
        writer.close()
    assert leftover == b""  # dropped without an answer
    assert elapsed >= 0.3
    await assert_serving(shard.port)


async def test_a_client_that_dribbles_its_head_is_dropped_at_the_handshake_deadline(
    start_shard,
) -> None:
    shard = await start_shard(echo_app(), handshake_timeout=0.5)
    assert shard.port is not None
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(HOST, shard.port)
    request, _ = upgrade_request(shard.port)
    started = loop.time()
    eof = asyncio.ensure_future(reader.read())
    try:
        for byte in request[:-2]:  # one byte every 50 ms: always "making progress"
            if eof.done():
                break
            writer.write(bytes([byte]))
            await asyncio.wait({eof}, timeout=0.05)
            assert loop.time() - started < 8, "a dribbling client was never dropped"
        assert eof.done(), "the head was sent in full before the deadline"
        assert eof.result() == b""
    finally:
        eof.cancel()
        writer.close()
    assert loop.time() - started >= 0.3
    await assert_serving(shard.port)


async def test_an_upgrade_without_a_key_is_400(echo_server: Shard) -> None:
    port = echo_server.port
    assert port is not None
    request, _ = upgrade_request(port)
    without_key = b"\r\n".join(
        line for line in request.split(b"\r\n") if not line.startswith(b"Sec-WebSocket-Key")
    )
    assert (await http_exchange(port, without_key)).status == 400
    await assert_serving(port)


async def test_an_upgrade_with_an_unsupported_version_names_the_supported_one(
    echo_server: Shard,
) -> None:
    """RFC 6455 4.4: refuse (426 or another 4xx) with a Sec-WebSocket-Version header."""
    port = echo_server.port
    assert port is not None
    request, _ = upgrade_request(port)
    request = request.replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
    response = await http_exchange(port, request)
    assert response.status in (400, 426)
    assert response.headers.get("sec-websocket-version") == "13"
    await assert_serving(port)


async def test_the_handshake_deadline_does_not_drop_an_upgraded_connection(start_shard) -> None:
    shard = await start_shard(echo_app(), handshake_timeout=0.3)
    async with connect(f"ws://127.0.0.1:{shard.port}/ws") as client:
        await asyncio.sleep(0.8)
        assert await client.call("echo", {"n": 1}) == {"n": 1}


async def test_an_upgrade_on_an_unknown_path_or_namespace_is_404(echo_server: Shard) -> None:
    port = echo_server.port
    for path in ("/elsewhere", "/ws/nosuchnamespace"):
        with pytest.raises(ConnectRefused) as refused:
            await connect(f"ws://127.0.0.1:{port}{path}")
        assert refused.value.status == 404
    await assert_serving(port)


async def test_an_origin_not_allowed_is_403_with_a_one_line_reason(start_shard) -> None:
    app = echo_app(allowed_origins=["https://good.example"])
    shard = await start_shard(app)
    url = f"ws://127.0.0.1:{shard.port}/ws"
    for origin in ("https://evil.example", None):
        with pytest.raises(ConnectRefused) as refused:
            await connect(url, origin=origin)
        assert refused.value.status == 403
        body = refused.value.body
        assert body.endswith("\n") and body.count("\n") == 1 and len(body.strip()) > 0
        if origin is not None:
            assert "evil.example" in body
    assert app.connections == []
    await assert_serving(shard.port, origin="https://good.example")


async def test_a_namespace_is_served_under_the_ws_path(start_shard) -> None:
    app = echo_app()

    @app.on("whereami", namespace="/x")
    async def whereami(conn: Connection) -> str:
        return conn.namespace

    shard = await start_shard(app)
    async with connect(f"ws://127.0.0.1:{shard.port}/ws/x") as client:
        assert client.greeting["namespace"] == "/x"
        assert await client.call("whereami") == "/x"
        # the default namespace's events are not served in /x
        with pytest.raises(ErrorReply) as unknown:
            await client.call("echo", {})
        assert unknown.value.code == "UNKNOWN_EVENT"
    raw = await RawWS.open(shard.port, "/ws/x/")
    await raw.aclose()
    with pytest.raises(ConnectRefused) as refused:
        await connect(f"ws://127.0.0.1:{shard.port}/ws/y")
    assert refused.value.status == 404
    await assert_serving(shard.port)
