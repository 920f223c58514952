"""The load generator of bench/run.py: raw asyncio connections that speak three envelopes.

Not a WebSocket client library. Each connection does its own HTTP upgrade, sends frames
built once per message kind (pre-masked; frames that carry a send timestamp use the
all-zero mask key, so that stamping one costs no masking: RFC 6455 wants a fresh key per
frame, which costs a server nothing different), and parses server frames only as far as
it needs: opcode, length, and a prefix that tells the workload's frame (an ``echo`` or a
``said`` event) from everything else.

The workload's frames all have one length, so a read that holds only such frames is
counted at C speed (``bytearray.count`` of the prefix, headers checked at the first and
the last frame) without a Python loop per frame; anything else goes through the frame
loop. That keeps the generator well below one core while a server delivers 300,000
frames a second.

Envelopes (``Dialect``):

- ``socketspec``: ``{"event":E,"payload":P}``; a ``__connect__`` greeting (with the
  shard) after the upgrade, acks as ``__ack__``, the heartbeat ``__ping__`` answered
  with ``__pong__``.
- ``json``: the same envelope on the websockets and FastAPI peers: no greeting, acks
  as ``__ack__`` (the peers answer them that way), keepalive by WebSocket pings.
- ``socketio``: Engine.IO v4 / Socket.IO v5 over a WebSocket from the start
  (``/socket.io/?EIO=4&transport=websocket``): the server's ``0{...}`` open packet,
  the client's ``40`` and the server's ``40{...}``, events ``42["E",P]``, an ack
  asked with ``421[...]`` comes back as ``431[...]``, and the server's ping ``2`` is
  answered with ``3``.

WebSocket pings are answered with pongs, a Close frame is answered and the connection
ends. Only connects to 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024
MAX_BUFFER = 4 * 1024 * 1024
OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
ZERO_KEY = b"\0\0\0\0"
STAMP_KEY = b'"t":"'
STAMP_DIGITS = 19
ENVELOPE_OVERHEAD = len(b'{"event":"echo","payload":}')  # the same for "said"


# -- frames ---------------------------------------------------------------------------------------


def mask(payload: bytes, key: bytes) -> bytes:
    if key == ZERO_KEY or not payload:
        return payload
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One masked, final client frame (a random key unless one is given)."""
    key = key or os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + mask(payload, key)


CLOSE_FRAME = client_frame(OP_CLOSE, struct.pack("!H", 1000))


def echo_payload(size: int) -> bytes:
    """The echo payload: socketspec's envelope around it is exactly ``size`` bytes."""
    base = b'{"user":"bench","text":""}'
    fill = size - ENVELOPE_OVERHEAD - len(base)
    if fill < 0:
        raise ValueError(f"message size must be at least {ENVELOPE_OVERHEAD + len(base)} bytes")
    return base[:-2] + b"x" * fill + base[-2:]


def stamped_payload(size: int) -> tuple[bytes, bytes]:
    """The shout payload around its timestamp: (before the digits, after them), such that
    socketspec's ``said`` envelope is exactly ``size`` bytes."""
    head, tail = b'{"t":"', b'","pad":""}'
    fill = size - ENVELOPE_OVERHEAD - len(head) - STAMP_DIGITS - len(tail)
    if fill < 0:
        raise ValueError(f"message size must be at least {size - fill} bytes")
    return head, tail[:-2] + b"x" * fill + tail[-2:]


# -- envelopes ------------------------------------------------------------------------------------

SOCKETSPEC, JSON, SOCKETIO = "socketspec", "json", "socketio"


@dataclass(frozen=True)
class Dialect:
    name: str
    envelope: bytes  # % (event, payload)
    ack_envelope: bytes  # % (event, payload), ack id 1
    incoming: bytes  # % event: how a server's event starts
    path: str | None = None  # replaces the path the server announced

    def message(self, event: str, payload: bytes, *, ack: bool = False) -> bytes:
        return (self.ack_envelope if ack else self.envelope) % (event.encode(), payload)

    def prefix(self, event: str) -> bytes:
        return self.incoming % event.encode()


DIALECTS = {
    SOCKETSPEC: Dialect(
        SOCKETSPEC,
        b'{"event":"%s","payload":%s}',
        b'{"event":"%s","payload":%s,"ack":1}',
        b'{"event":"%s"',
    ),
    JSON: Dialect(
        JSON,
        b'{"event":"%s","payload":%s}',
        b'{"event":"%s","payload":%s,"ack":1}',
        b'{"event":"%s"',
    ),
    SOCKETIO: Dialect(
        SOCKETIO,
        b'42["%s",%s]',
        b'421["%s",%s]',
        b'42["%s"',
        path="/socket.io/?EIO=4&transport=websocket",
    ),
}
PONG_EVENT = client_frame(OP_TEXT, b'{"event":"__pong__","payload":{}}')
SOCKETIO_CONNECT = client_frame(OP_TEXT, b"40")
SOCKETIO_PONG = client_frame(OP_TEXT, b"3")


class Stamper:
    """Shout frames with the send time in their payload (perf_counter_ns, 19 digits)."""

    def __init__(self, dialect: Dialect, size: int) -> None:
        head, tail = stamped_payload(size)
        message = dialect.message("shout", head + b"%s" + tail)
        self.before, self.after = message.split(b"%s")

    def frame(self, stamp: int) -> bytes:
        payload = b"%s%0*d%s" % (self.before, STAMP_DIGITS, stamp, self.after)
        return client_frame(OP_TEXT, payload, ZERO_KEY)


# -- one run's counters ---------------------------------------------------------------------------


@dataclass
class Stats:
    """Counters shared by every connection of one run; read as snapshots."""

    hot: int = 0  # the workload's frames (echoes or said) received
    acks: int = 0
    heartbeats: int = 0  # application-level pings answered (__ping__, Engine.IO "2")
    pings: int = 0  # WebSocket ping frames answered
    other_messages: int = 0
    server_closes: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    sampling: bool = False
    sample_every: int = 1
    latencies_ns: dict[int, list[int]] = field(default_factory=dict)  # by the member's shard
    unparsed_stamps: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(text)

    def samples(self, shard: int) -> list[int]:
        found = self.latencies_ns.get(shard)
        if found is None:
            found = self.latencies_ns[shard] = []
        return found

    def fields(self) -> dict[str, Any]:
        return {
            "acks": self.acks,
            "heartbeats": self.heartbeats,
            "pings": self.pings,
            "other_messages": self.other_messages,
            "server_closes": self.server_closes,
            "close_codes": {str(code): n for code, n in self.close_codes.items()},
            "unparsed_stamps": self.unparsed_stamps,
            "errors": self.errors,
        }


class Slowest:
    """The lowest count of the workload's frames over a set of connections, kept in O(1)
    per update (a histogram of counts), so that pacing can follow the slowest member."""

    def __init__(self) -> None:
        self.histogram: dict[int, int] = {}
        self.low = 0

    def add(self, count: int) -> None:
        self.histogram[count] = self.histogram.get(count, 0) + 1
        self.low = min(self.histogram)

    def remove(self, count: int) -> None:
        left = self.histogram.get(count, 0) - 1
        if left > 0:
            self.histogram[count] = left
        else:
            self.histogram.pop(count, None)
        if count == self.low and left <= 0 and self.histogram:
            self.low = min(self.histogram)

    def moved(self, old: int, new: int) -> bool:
        """One member went from ``old`` to ``new``; True when the lowest count rose."""
        histogram = self.histogram
        left = histogram[old] - 1
        if left:
            histogram[old] = left
        else:
            del histogram[old]
        histogram[new] = histogram.get(new, 0) + 1
        if old != self.low or left:
            return False
        low = old + 1
        while low not in histogram:  # ends at ``new`` at the latest
            low += 1
        self.low = low
        return True


# -- one connection -------------------------------------------------------------------------------

HANDSHAKE, OPEN, CLOSING, CLOSED = range(4)
ECHO, SAID = "echo", "said"


class Client(asyncio.Protocol):
    """One connection. ``opened`` resolves once the server's greeting is in (socketspec's
    ``__connect__``, Socket.IO's ``40``), else at the 101; ``acked`` at the join's ack."""

    def __init__(
        self, port: int, path: str, dialect: Dialect, stats: Stats, mode: str, index: int = 0
    ) -> None:
        key = base64.b64encode(os.urandom(16))
        self.request = (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path.encode(), HOST.encode(), port, key)
        )
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.dialect = dialect
        self.kind = dialect.name
        self.stats = stats
        self.mode = mode
        self.hot_prefix = dialect.prefix(mode)
        self.hot_header = b""  # learned from the first such frame: its header
        self.hot_size = 0  # and its whole length
        self.stamp_offset = -1  # where its timestamp's digits start
        self.phase = HANDSHAKE
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.acked: asyncio.Future[None] = loop.create_future()
        self.shard = -1
        self.count = 0  # the workload's frames this connection received
        # Echo: ``frames[k]`` is k copies of the message; each echo is replaced by a new one.
        self.frames: list[bytes] = []
        self.pumping = False
        self.outstanding = 0
        self.on_drained: Callable[[], None] | None = None
        self.timed = False  # echo latency: one in flight, its round trip sampled
        self.sent_at = 0
        # Said: every ``sample_every``-th frame is timed, staggered over the members.
        self.countdown = index % stats.sample_every + 1
        self.slowest: Slowest | None = None
        self.on_low: Callable[[], None] | None = None
        self.hot = self._echoed if mode == ECHO else self._said

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED
        for future, before in ((self.opened, "the greeting"), (self.acked, "the ack")):
            if not future.done():
                reason = f"connection lost before {before}: {exc or 'closed by the server'}"
                future.set_exception(ConnectionError(reason))
                future.exception()  # awaited only while opening: no "never retrieved"
        if not self.lost.done():
            self.lost.set_result(None)
        self.pumping = False
        if self.slowest is not None:
            self.slowest.remove(self.count)  # pacing no longer waits for it
            self.slowest = None
            if self.on_low is not None:
                self.on_low()
        if self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.phase == HANDSHAKE:
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
            self.phase = OPEN
            if self.kind == JSON:
                self.opened.set_result(None)
        self._parse(buf)

    # -- frames ------------------------------------------------------------------------------

    def _parse(self, buf: bytearray) -> None:
        size = self.hot_size
        if size and len(buf) >= size:
            # Only the workload's frames, all of one length: counted without a loop.
            k = len(buf) // size
            last = (k - 1) * size
            header = self.hot_header
            prefix = self.hot_prefix
            if (
                buf.startswith(header)
                and buf.startswith(header, last)
                and buf.startswith(prefix, last + len(header))
                and buf.count(prefix, 0, k * size) == k
            ):
                self.hot(buf, 0, k, size)
                del buf[: k * size]
                if len(buf) < 2:
                    return
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            header_length = 2
            if length >= 126:
                if length & 0x80:
                    self._fail("masked server frame")
                    return
                if length == 126:
                    if n - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header_length = 4
                else:
                    if n - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    header_length = 10
            start = pos + header_length
            end = start + length
            if end > n:
                break
            opcode = first & 0x0F
            if opcode == OP_TEXT and buf.startswith(self.hot_prefix, start):
                if not self.hot_size:
                    self.hot_size = end - pos
                    self.hot_header = bytes(buf[pos:start])
                    at = buf.find(STAMP_KEY, start, end)
                    self.stamp_offset = at + len(STAMP_KEY) - pos if at >= 0 else -1
                self.hot(buf, pos, 1, end - pos)
            elif opcode == OP_PING:
                self.stats.pings += 1
                self._write(client_frame(OP_PONG, bytes(buf[start:end]), ZERO_KEY))
            elif opcode == OP_CLOSE:
                self._on_close(bytes(buf[start:end]))
                return
            elif opcode != OP_PONG:
                self._control(bytes(buf[start:end]))
            pos = end
        if pos:
            del buf[:pos]
        elif n > MAX_BUFFER:
            self._fail("frame larger than the generator's buffer")

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and self.phase == OPEN:
            self.transport.write(frame)

    def _control(self, message: bytes) -> None:
        """Every message that is not the workload's frame: greetings, acks, heartbeats."""
        stats = self.stats
        if self.kind == SOCKETIO:
            if message == b"2":
                stats.heartbeats += 1
                self._write(SOCKETIO_PONG)
            elif message.startswith(b"0{"):
                self._write(SOCKETIO_CONNECT)
            elif message.startswith(b"40"):
                if not self.opened.done():
                    self.opened.set_result(None)
            elif message.startswith(b"431"):
                stats.acks += 1
                if not self.acked.done():
                    self.acked.set_result(None)
            else:
                stats.other_messages += 1
                if message.startswith((b"44", b"41", b"1")):
                    stats.error(f"socket.io: {message[:200]!r}")
            return
        if message.startswith(b'{"event":"__ping__"'):
            stats.heartbeats += 1
            self._write(PONG_EVENT)
            return
        try:
            envelope = orjson.loads(message)
            event = envelope.get("event")
        except (orjson.JSONDecodeError, AttributeError):
            stats.other_messages += 1
            stats.error(f"unreadable message: {message[:120]!r}")
            return
        if event == "__connect__":
            shard = (envelope.get("payload") or {}).get("shard", 0)
            self.shard = shard if isinstance(shard, int) else -1
            if not self.opened.done():
                self.opened.set_result(None)
        elif event == "__ack__" and envelope.get("ack") == 1:
            stats.acks += 1
            if not self.acked.done():
                self.acked.set_result(None)
        else:
            stats.other_messages += 1
            if event == "__error__":
                stats.error(f"__error__: {message[:200]!r}")
                if not self.acked.done():
                    self.acked.set_exception(ConnectionError(f"refused: {message[:200]!r}"))
                    self.acked.exception()

    def _on_close(self, payload: bytes) -> None:
        stats = self.stats
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if self.phase == OPEN:
            stats.server_closes += 1
            stats.close_codes[code] = stats.close_codes.get(code, 0) + 1
            if self.transport is not None:
                self.transport.write(client_frame(OP_CLOSE, payload[:2]))
        self.phase = CLOSED
        self.buf.clear()
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        self.stats.error(reason)
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(reason))
            self.opened.exception()
        if self.transport is not None:
            self.transport.abort()

    # -- the workload's frames ---------------------------------------------------------------

    def _echoed(self, buf: bytearray, first: int, count: int, stride: int) -> None:
        self.stats.hot += count
        self.count += count
        self.outstanding -= count
        if self.timed:
            now = time.perf_counter_ns()
            if self.stats.sampling:
                self.stats.samples(self.shard).append(now - self.sent_at)
            self.sent_at = now
        if self.pumping:
            frames = self.frames
            # More echoes than were in flight would be a server bug; send as many anyway.
            self._write(frames[count] if count < len(frames) else frames[1] * count)
            self.outstanding += count
        elif self.outstanding <= 0 and self.on_drained is not None:
            callback, self.on_drained = self.on_drained, None
            callback()

    def _said(self, buf: bytearray, first: int, count: int, stride: int) -> None:
        stats = self.stats
        old = self.count
        self.count = old + count
        stats.hot += count
        index = self.countdown - 1  # the batch's first frame to time
        if index < count:
            every = stats.sample_every
            if stats.sampling and self.stamp_offset >= 0:
                now = time.perf_counter_ns()
                samples = stats.samples(self.shard)
                offset = first + self.stamp_offset
                while index < count:
                    at = offset + index * stride
                    try:
                        samples.append(now - int(buf[at : at + STAMP_DIGITS]))
                    except ValueError:
                        stats.unparsed_stamps += 1
                    index += every
            else:
                index += (count - index + every - 1) // every * every
        self.countdown = index - count + 1
        slowest = self.slowest
        if slowest is not None and slowest.moved(old, self.count) and self.on_low is not None:
            self.on_low()

    # -- driving -----------------------------------------------------------------------------

    def start_pumping(self, inflight: int) -> None:
        """Send ``inflight`` messages; every echo that comes back is replaced by a new one."""
        if self.transport is None or self.phase != OPEN:
            return
        self.pumping = True
        self.outstanding += inflight
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.frames[inflight])

    def stop_pumping(self, on_drained: Callable[[], None]) -> None:
        """Send nothing more; ``on_drained`` runs when the messages in flight are back."""
        self.pumping = False
        if self.outstanding <= 0 or self.phase != OPEN:
            on_drained()
        else:
            self.on_drained = on_drained

    def close(self) -> None:
        if self.transport is None or self.phase == CLOSED:
            return
        if self.phase == OPEN:
            self.phase = CLOSING
            self.transport.write(CLOSE_FRAME)
        else:
            self.transport.abort()


# -- many connections -----------------------------------------------------------------------------


async def open_clients(
    count: int,
    port: int,
    path: str,
    dialect: Dialect,
    stats: Stats,
    *,
    mode: str,
    join: bool = False,
    first_index: int = 0,
    concurrency: int = 64,
    timeout: float = 10.0,
    deadline: float = 60.0,
    source: str | None = None,
) -> tuple[list[Client], int]:
    """Open ``count`` connections past their greeting (and past the ack of ``join`` when
    asked), ``concurrency`` at a time; returns (the clients, how many failed). Bounded by
    ``timeout`` per connection and ``deadline`` overall. ``source`` is the loopback address
    to connect from (each source address has its own ephemeral ports)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    join_frame = client_frame(OP_TEXT, dialect.message("join", b"{}", ack=True))
    clients: list[Client] = []
    failures = 0
    stop_at = time.monotonic() + deadline

    async def one(index: int) -> None:
        nonlocal failures
        async with gate:
            if time.monotonic() > stop_at:
                failures += 1
                return
            client: Client | None = None
            try:
                async with asyncio.timeout(timeout):
                    _, client = await loop.create_connection(
                        lambda: Client(port, path, dialect, stats, mode, index),
                        HOST,
                        port,
                        local_addr=(source, 0) if source else None,
                    )
                    await client.opened
                    if join:
                        client._write(join_frame)
                        await client.acked
            except (OSError, TimeoutError) as exc:
                failures += 1
                stats.error(f"connect: {type(exc).__name__}: {exc}")
                if client is not None and client.transport is not None:
                    client.transport.abort()
                return
            clients.append(client)

    await asyncio.gather(*(one(first_index + k) for k in range(count)))
    return clients, failures


async def close_clients(clients: list[Client], timeout: float = 10.0) -> None:
    """Closing handshakes for all, bounded by ``timeout``; whatever is left is aborted."""
    for client in clients:
        client.close()
    waiting = [client.lost for client in clients if not client.lost.done()]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
    for client in clients:
        if client.transport is not None and not client.lost.done():
            client.transport.abort()


async def stop_all(clients: list[Client], timeout: float) -> bool:
    """Stop sending; wait (bounded) for the messages in flight. True if all came back."""
    if not clients:
        return True
    done = asyncio.get_running_loop().create_future()
    remaining = len(clients)

    def one_drained() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 and not done.done():
            done.set_result(None)

    for client in clients:
        client.stop_pumping(one_drained)
    try:
        async with asyncio.timeout(timeout):
            await done
    except TimeoutError:
        return False
    return True


class Pacer:
    """Keeps the sender at most ``window`` broadcasts ahead of the slowest member: as fast
    as the server takes them, with every queue on the way bounded."""

    def __init__(self, sender: Client, members: list[Client], window: int, stamper: Stamper):
        self.sender = sender
        self.window = window
        self.stamper = stamper
        self.slowest = Slowest()
        for member in members:
            if member.lost.done():
                continue
            self.slowest.add(member.count)
            member.slowest = self.slowest
            member.on_low = self.advance
        self.sent = 0
        self.sending = False

    def start(self) -> None:
        self.sending = True
        self.advance()

    def stop(self) -> None:
        self.sending = False

    def advance(self) -> None:
        if not self.sending:
            return
        transport = self.sender.transport
        if transport is None or transport.is_closing():
            return
        target = self.slowest.low + self.window
        if target > self.sent:
            transport.write(self.stamper.frame(time.perf_counter_ns()) * (target - self.sent))
            self.sent = target
