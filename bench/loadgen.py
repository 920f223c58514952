"""A WebSocket load generator on asyncio + uvloop: raw sockets, its own HTTP upgrade,
pre-built masked frames, and a minimal parser of server frames.

Not a WebSocket client library: every client frame of a run is built once (one mask
key per message kind, which RFC 6455 does not allow for a real client but costs the
server nothing different), server frames are parsed only as far as opcode and length,
and a reply counts as an echo when it is a text frame of the expected length that
starts with ``{"event":"echo"``. Ping frames are answered with Pong frames, and
socketspec's heartbeat (a ``__ping__`` event) with a ``__pong__`` event, as its client
does (unanswered, the server closes the connection after 35 s with 4005); a Close
frame is answered and the connection ends. Only connects to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Frames are built as the harness's generator builds them.
from generator import (
    CLOSE_FRAME,
    GUID,
    HOST,
    MAX_BUFFER,
    MAX_HEAD,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    client_frame,
)

ECHO_PREFIX = b'{"event":"echo"'
HEARTBEAT_PREFIX = b'{"event":"__ping__"'


def echo_message(size: int) -> bytes:
    """A compact JSON envelope of exactly ``size`` bytes (at least 48)."""
    base = b'{"event":"echo","payload":{"user":"bench","text":""}}'
    if size < len(base):
        raise ValueError(f"message size must be at least {len(base)} bytes")
    return base[:-3] + b"x" * (size - len(base)) + base[-3:]


HEARTBEAT_REPLY = client_frame(OP_TEXT, b'{"event":"__pong__"}')


@dataclass
class Stats:
    """Counters shared by every connection of one run; read as snapshots."""

    echoes: int = 0
    other_messages: int = 0  # greetings, __error__ envelopes, anything not an echo
    pings: int = 0
    heartbeats: int = 0  # socketspec __ping__ events (answered; also in other_messages)
    server_closes: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)


class Phase:
    HANDSHAKE = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class BenchClient(asyncio.Protocol):
    """One connection. ``opened`` resolves after the 101 (and the greeting, if expected)."""

    def __init__(
        self,
        path: str,
        port: int,
        stats: Stats,
        *,
        expect_greeting: bool,
        echo_length: int,
        frames: list[bytes],
    ) -> None:
        key = base64.b64encode(os.urandom(16))
        self.request = (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path.encode(), HOST.encode(), port, key)
        )
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.stats = stats
        self.expect_greeting = expect_greeting
        self.echo_length = echo_length
        self.frames = frames  # frames[k] is k copies of the echo frame
        self.phase = Phase.HANDSHAKE
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.pumping = False
        self.outstanding = 0
        self.on_drained: Callable[[], None] | None = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = Phase.CLOSED
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)
        self.pumping = False
        if self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.phase == Phase.HANDSHAKE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self._fail("response head too large")
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.1 101") or self.accept not in head:
                self._fail(f"upgrade refused: {head[:200]!r}")
                return
            self.phase = Phase.OPEN
            if not self.expect_greeting:
                self.opened.set_result(None)
        self._parse(buf)

    # -- frames ------------------------------------------------------------------------------

    def _parse(self, buf: bytearray) -> None:
        n = len(buf)
        pos = 0
        echoes = 0
        echo_length = self.echo_length
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            header = 2
            if length >= 126:
                if length & 0x80:
                    self._fail("masked server frame")
                    return
                if length == 126:
                    if n - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header = 4
                else:
                    if n - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    header = 10
            end = pos + header + length
            if end > n:
                break
            opcode = first & 0x0F
            if (
                opcode == OP_TEXT
                and length == echo_length
                and buf.startswith(ECHO_PREFIX, pos + header)
            ):
                echoes += 1
            elif opcode == OP_PING:
                self.stats.pings += 1
                if self.transport is not None and self.phase == Phase.OPEN:
                    self.transport.write(client_frame(OP_PONG, bytes(buf[pos + header : end])))
            elif opcode == OP_CLOSE:
                self._on_close(bytes(buf[pos + header : end]))
                return
            elif opcode != OP_PONG:
                self.stats.other_messages += 1
                if not self.opened.done():
                    self.opened.set_result(None)  # the greeting
                elif opcode == OP_TEXT and buf.startswith(HEARTBEAT_PREFIX, pos + header):
                    self.stats.heartbeats += 1
                    if self.transport is not None and self.phase == Phase.OPEN:
                        self.transport.write(HEARTBEAT_REPLY)
            pos = end
        if pos:
            del buf[:pos]
        elif n > MAX_BUFFER:
            self._fail("frame larger than the generator's buffer")
            return
        if echoes:
            self._on_echoes(echoes)

    def _on_echoes(self, count: int) -> None:
        self.stats.echoes += count
        self.outstanding -= count
        if self.pumping:
            transport = self.transport
            if transport is not None:
                frames = self.frames
                # More echoes than were in flight would be a server bug; send as many anyway.
                transport.write(frames[count] if count < len(frames) else frames[1] * count)
                self.outstanding += count
        elif self.outstanding <= 0 and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()

    def _on_close(self, payload: bytes) -> None:
        stats = self.stats
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if self.phase == Phase.OPEN:
            stats.server_closes += 1
            stats.close_codes[code] = stats.close_codes.get(code, 0) + 1
            if self.transport is not None:
                self.transport.write(client_frame(OP_CLOSE, payload[:2]))
        self.phase = Phase.CLOSED
        self.buf.clear()
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        self.stats.error(reason)
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.abort()

    # -- driving -----------------------------------------------------------------------------

    def start_pumping(self, inflight: int) -> None:
        """Send ``inflight`` messages; every echo that comes back is replaced by a new one."""
        if self.transport is None or self.phase != Phase.OPEN:
            return
        self.pumping = True
        self.outstanding += inflight
        self.transport.write(self.frames[inflight])

    def stop_pumping(self, on_drained: Callable[[], None]) -> None:
        """Send nothing more; ``on_drained`` runs when the messages in flight are back."""
        self.pumping = False
        if self.outstanding <= 0 or self.phase != Phase.OPEN:
            on_drained()
        else:
            self.on_drained = on_drained

    def close(self) -> None:
        if self.transport is None or self.phase == Phase.CLOSED:
            return
        if self.phase == Phase.OPEN:
            self.phase = Phase.CLOSING
            self.transport.write(CLOSE_FRAME)
        else:
            self.transport.abort()


async def open_clients(
    count: int,
    port: int,
    path: str,
    stats: Stats,
    *,
    expect_greeting: bool,
    message: bytes,
    inflight: int = 1,
    concurrency: int = 64,
    timeout: float = 10.0,
    deadline: float = 120.0,
) -> tuple[list[BenchClient], int]:
    """Open ``count`` connections (``concurrency`` handshakes at a time); returns
    (the open clients, how many failed). Bounded by ``timeout`` per connection and
    ``deadline`` overall."""
    loop = asyncio.get_running_loop()
    frame = client_frame(OP_TEXT, message)
    frames = [frame * k for k in range(inflight + 1)]
    gate = asyncio.Semaphore(concurrency)
    clients: list[BenchClient] = []
    failures = 0
    stop_at = time.monotonic() + deadline

    def factory() -> BenchClient:
        return BenchClient(
            path,
            port,
            stats,
            expect_greeting=expect_greeting,
            echo_length=len(message),
            frames=frames,
        )

    async def one() -> None:
        nonlocal failures
        async with gate:
            if time.monotonic() > stop_at:
                failures += 1
                return
            try:
                async with asyncio.timeout(timeout):
                    _, client = await loop.create_connection(factory, HOST, port)
                    await client.opened
            except (OSError, TimeoutError) as exc:
                failures += 1
                stats.error(f"connect: {type(exc).__name__}: {exc}")
                return
            clients.append(client)

    await asyncio.gather(*(one() for _ in range(count)))
    return clients, failures


async def close_clients(clients: list[BenchClient], timeout: float = 10.0) -> None:
    """Closing handshakes for all, bounded by ``timeout``; whatever is left is aborted."""
    for client in clients:
        client.close()
    waiting = [client.lost for client in clients if not client.lost.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
    for client in clients:
        if client.transport is not None and not client.lost.done():
            client.transport.abort()
