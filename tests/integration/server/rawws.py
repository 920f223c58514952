"""A deliberately dumb WebSocket client for tests: the HTTP upgrade done by hand, and
arbitrary frames (masked or not, fragmented, reserved bits and opcodes) on a raw socket.

Nothing here validates what it sends; it only parses what the server sends back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOST = "127.0.0.1"


class Closed(Exception):
    """The TCP connection ended (EOF or reset) before the expected frame arrived."""


@dataclass(frozen=True)
class Frame:
    fin: bool
    rsv: int  # the three RSV bits, as in the first byte (0x70 mask)
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE or len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head = struct.pack("!BB", first, mask_bit | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _xor(payload, key)


def _xor(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def envelope(event: str, payload: dict[str, Any] | None = None, ack: Any = None) -> bytes:
    message: dict[str, Any] = {"event": event, "payload": payload or {}}
    if ack is not None:
        message["ack"] = ack
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def http_exchange(
    port: int, request: bytes, *, timeout: float = 10.0, **kw: Any
) -> HttpResponse:
    """Send ``request`` verbatim, read the response until the server closes."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port, **kw)
        try:
            writer.write(request)
            await writer.drain()
            status, headers = await _read_head(reader)
            body = await reader.read()  # every plain answer closes the connection
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return HttpResponse(status, headers, body)


async def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> HttpResponse:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return await http_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode(), **kw)


def upgrade_request(
    port: int, path: str = "/ws", extra: dict[str, str] | None = None
) -> tuple[bytes, str]:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


class RawWS:
    """One upgraded connection on which the test writes whatever bytes it likes."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response_headers: dict[str, str],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.response_headers = response_headers

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/ws",
        *,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
    ) -> RawWS:
        """Upgrade; ``rcvbuf`` shrinks the socket's receive buffer (a client that reads slowly
        fills up sooner). Raises AssertionError unless the server answers 101."""
        async with asyncio.timeout(timeout):
            if rcvbuf is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
                reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
            request, key = upgrade_request(port, path, headers)
            writer.write(request)
            status, response_headers = await _read_head(reader)
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if status != 101 or response_headers.get("sec-websocket-accept") != expected:
            writer.close()
            raise AssertionError(f"upgrade refused: {status} {response_headers}")
        return cls(reader, writer, response_headers)

    # -- writing ---------------------------------------------------------------------------------

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
    ) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    def send_text(self, text: str | bytes) -> None:
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str) else text)

    def send_event(
        self, event: str, payload: dict[str, Any] | None = None, ack: Any = None
    ) -> None:
        self.send_frame(OP_TEXT, envelope(event, payload, ack))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- reading ---------------------------------------------------------------------------------

    async def read_frame(self, timeout: float = 10.0) -> Frame:
        """The next frame; raises ``Closed`` on EOF or reset, ``TimeoutError`` after ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                head = await self.reader.readexactly(2)
                first, second = head
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                key = await self.reader.readexactly(4) if second & 0x80 else b""
                payload = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(str(exc)) from None
        if key:
            payload = _xor(payload, key)
        return Frame(bool(first & 0x80), first & 0x70, first & 0x0F, payload)

    async def read_message(self, timeout: float = 10.0) -> Frame:
        """The next data frame whose JSON is not housekeeping (__connect__, __ping__)."""
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode == OP_CLOSE:
                raise AssertionError(f"closed with {frame.close_code}: {frame.close_reason}")
            if frame.opcode == OP_TEXT:
                event = frame.json().get("event")
                if event in ("__connect__", "__ping__"):
                    continue
                return frame
            if frame.opcode == OP_BINARY:
                return frame

    async def read_event(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next envelope of ``event`` (others skipped)."""
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode == OP_CLOSE:
                raise AssertionError(
                    f"closed with {frame.close_code} waiting for {event}: {frame.close_reason}"
                )
            if frame.opcode == OP_TEXT:
                message: dict[str, Any] = frame.json()
                if message.get("event") == event:
                    return message

    async def read_close(self, timeout: float = 10.0) -> Frame:
        """Skip data frames up to the server's Close frame (``Closed`` if TCP ends first)."""
        while True:
            frame = await self.read_frame(timeout)
            if frame.opcode == OP_CLOSE:
                return frame

    async def read_eof(self, timeout: float = 10.0) -> bytes:
        """Everything up to the end of the TCP stream (reset counts as the end)."""
        chunks = []
        try:
            async with asyncio.timeout(timeout):
                while chunk := await self.reader.read(65536):
                    chunks.append(chunk)
        except ConnectionError:
            pass
        return b"".join(chunks)

    async def aclose(self) -> None:
        self.writer.close()
        try:
            async with asyncio.timeout(5):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            self.writer.transport.abort()
