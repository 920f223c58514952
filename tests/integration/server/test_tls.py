"""TLS: a shard started with a certificate serves wss:// and https health answers."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path

import pytest
import websockets
from rawws import http_get
from shardkit import echo_app

from socketspec.client import ConnectionClosed, connect


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    return context


async def test_wss_and_https_are_served_with_the_certificate(
    start_shard, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    shard = await start_shard(echo_app(), certfile=str(cert), keyfile=str(key))
    port = shard.port
    context = trusting(cert)
    async with connect(f"wss://127.0.0.1:{port}/ws", ssl=context) as client:
        assert client.greeting["shard"] == 0
        assert await client.call("echo", {"secure": True}) == {"secure": True}
    async with websockets.connect(f"wss://127.0.0.1:{port}/ws", ssl=context) as ws:
        assert json.loads(await ws.recv())["event"] == "__connect__"
    response = await http_get(port, "/healthz", ssl=context, server_hostname="127.0.0.1")
    assert response.status == 200
    assert json.loads(response.body)["status"] == "ok"


async def test_a_client_that_does_not_trust_the_certificate_is_not_served(
    start_shard, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    shard = await start_shard(echo_app(), certfile=str(cert), keyfile=str(key))
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(f"wss://127.0.0.1:{shard.port}/ws", ssl=ssl.create_default_context())
    # plain text on the TLS port gets no WebSocket either
    with pytest.raises(ConnectionClosed):
        await connect(f"ws://127.0.0.1:{shard.port}/ws", open_timeout=5)
    async with connect(f"wss://127.0.0.1:{shard.port}/ws", ssl=trusting(cert)) as client:
        assert await client.call("echo", {"after": 1}) == {"after": 1}


async def test_a_client_that_never_starts_tls_is_dropped_after_the_handshake_timeout(
    start_shard, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    shard = await start_shard(
        echo_app(), certfile=str(cert), keyfile=str(key), handshake_timeout=0.5
    )
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", shard.port)
    started = loop.time()
    try:
        dropped = await asyncio.wait_for(reader.read(), 5)  # the handshake timeout is 0.5 s
    except TimeoutError:
        pytest.fail("a client that never sent a TLS ClientHello was still connected after 5 s")
    finally:
        writer.close()
    assert dropped == b""
    assert loop.time() - started >= 0.3
    async with connect(f"wss://127.0.0.1:{shard.port}/ws", ssl=trusting(cert)) as client:
        assert await client.call("echo", {"after": 1}) == {"after": 1}


async def test_a_tls_client_that_never_sends_its_request_is_dropped(
    start_shard, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    shard = await start_shard(
        echo_app(), certfile=str(cert), keyfile=str(key), handshake_timeout=0.5
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", shard.port, ssl=trusting(cert), server_hostname="127.0.0.1"
    )
    try:
        dropped = await asyncio.wait_for(reader.read(), 5)
    except TimeoutError:
        pytest.fail("a TLS client that never sent its request was still connected after 5 s")
    finally:
        writer.close()
    assert dropped == b""
