"""The benchmarks' floor: the same app on a bare uvloop ``asyncio.Protocol``, no framework.

Not a product and not a WebSocket server one should run: just enough of RFC 6455 to
serve the load generator, so that its numbers say what Python, uvloop and orjson cost
on this machine with nothing else in the way. What it does:

- its own HTTP upgrade: the request head up to the blank line, ``Sec-WebSocket-Key``
  found by a case-insensitive search, ``Sec-WebSocket-Accept`` computed, 101 sent (no
  check of the method, path, version or origin; no extension is ever accepted);
- its own client-frame parser: masked, final frames of up to 64 KiB (the 7-bit and
  16-bit lengths), unmasked in one step (``int.from_bytes`` of the payload XOR the key
  repeated); anything else (an unmasked frame, a fragment, a 64-bit length) drops the
  connection. Pings are answered with pongs, a close frame with a close frame and the
  end of the connection;
- the same envelope and app as bench/peers/websockets_app.py (orjson):

  - ``echo``: ``{"event":"echo","payload":...}`` back to the sender;
  - ``join``: the connection joins the room ``hall`` (a set of protocols); a message
    with ``"ack"`` is answered ``{"event":"__ack__","ack":<same>,"payload":{"room":"hall"}}``
    (no greeting before: the generator's ``json`` dialect);
  - ``shout``: the ``said`` envelope is serialised and framed once, and the same bytes
    are written to every member's transport.

The replies to one read go out in one ``transport.write``, and so do the ``said`` frames
of the shouts in one read: framed once each, joined once, the same bytes written to
every member (one system call per member per read, not per shout; the same coalescing
socketspec does per loop iteration). What the sender had pending goes out before, what
it is answered after, so that every connection's messages stay in order. No UTF-8
validation, no size limit, no backpressure, no timeouts, no closing handshake of its own.

    python bench/peers/bare_app.py [--port 0]

Prints "bare uvloop VERSION app (pid N) listening on ws://127.0.0.1:PORT/ws" once it
listens, and stops on SIGTERM or SIGINT. bench/run.py runs it from its own virtual
environment (bench/peers/requirements-bare.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import re
import signal
import struct
from importlib.metadata import version
from typing import Any

import orjson
import uvloop

ROOM = "hall"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024
KEY = re.compile(rb"\r\nsec-websocket-key:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
HANDSHAKE, OPEN, CLOSED = range(3)

rooms: dict[str, set[BareProtocol]] = {}


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, unmasked server frame."""
    length = len(payload)
    if length < 126:
        return bytes((0x80 | opcode, length)) + payload
    if length < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, length) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, length) + payload


def unmask(payload: bytes, key: bytes) -> bytes:
    length = len(payload)
    keys = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        length, "little"
    )


class BareProtocol(asyncio.Protocol):
    __slots__ = ("buffer", "out", "phase", "said", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.phase = HANDSHAKE
        self.out: list[bytes] = []  # replies to this read
        self.said: list[bytes] = []  # said frames of this read's shouts, for every member

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED
        for members in rooms.values():
            members.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if self.phase != OPEN:
            if self.phase == CLOSED:
                return
            data = self.upgrade(data)
            if not data:
                return
        self.frames(data)
        if self.said:
            self.publish()
        if self.out:
            self.flush()

    def flush(self) -> None:
        out = self.out
        self.out = []
        transport = self.transport
        if transport is not None and self.phase == OPEN:
            transport.write(out[0] if len(out) == 1 else b"".join(out))

    def publish(self) -> None:
        """The said frames so far to every member of the room, in one write each."""
        said = self.said
        self.said = []
        if self.out:
            self.flush()  # what this connection was sent before comes first
        data = said[0] if len(said) == 1 else b"".join(said)
        for member in rooms.get(ROOM, ()):
            transport = member.transport
            if transport is not None and member.phase == OPEN:
                transport.write(data)

    def reply(self, frame: bytes) -> None:
        if self.said:
            self.publish()  # the sender may be a member: its said frames come first
        self.out.append(frame)

    def drop(self) -> None:
        self.phase = CLOSED
        self.out = []
        self.said = []
        if self.transport is not None:
            self.transport.abort()

    # -- the upgrade -----------------------------------------------------------------------------

    def upgrade(self, data: bytes) -> bytes:
        """Answer the request head with a 101; what follows it (frames already) is returned."""
        end = data.find(b"\r\n\r\n")
        transport = self.transport
        assert transport is not None
        if end < 0:
            if len(data) > MAX_HEAD:
                self.refuse()
            else:
                self.buffer = data
            return b""
        found = KEY.search(data, 0, end + 2)
        if found is None or not data.startswith(b"GET "):
            self.refuse()
            return b""
        accept = base64.b64encode(hashlib.sha1(found.group(1) + GUID).digest())
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.phase = OPEN
        return data[end + 4 :]

    def refuse(self) -> None:
        self.phase = CLOSED
        if self.transport is not None:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    # -- frames ----------------------------------------------------------------------------------

    def frames(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        while n - pos >= 6:  # the smallest client frame: 2 bytes of header, 4 of mask key
            first = data[pos]
            length = data[pos + 1]
            if not length & 0x80 or not first & 0x80:  # unmasked, or a fragment
                self.drop()
                return
            length &= 0x7F
            start = pos + 6
            if length == 126:
                if n - pos < 8:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 8
            elif length == 127:
                self.drop()
                return
            end = start + length
            if end > n:
                break
            payload = unmask(data[start:end], data[start - 4 : start]) if length else b""
            pos = end
            opcode = first & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                self.message(payload)
            elif opcode == OP_PING:
                self.reply(server_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self.reply(server_frame(payload[:2], OP_CLOSE))
                self.flush()
                self.phase = CLOSED
                if self.transport is not None:
                    self.transport.close()
                return
            elif opcode != OP_PONG:
                self.drop()
                return
        if pos < n:
            self.buffer = data[pos:]

    # -- the app ---------------------------------------------------------------------------------

    def message(self, raw: bytes) -> None:
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if not isinstance(envelope, dict):
            return
        event = envelope.get("event")
        payload: Any = envelope.get("payload") or {}
        if event == "echo":
            self.reply(server_frame(orjson.dumps({"event": "echo", "payload": payload})))
        elif event == "join":
            rooms.setdefault(ROOM, set()).add(self)
            if "ack" in envelope:
                ack = {"event": "__ack__", "ack": envelope["ack"], "payload": {"room": ROOM}}
                self.reply(server_frame(orjson.dumps(ack)))
        elif event == "shout":
            self.said.append(server_frame(orjson.dumps({"event": "said", "payload": payload})))


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(BareProtocol, host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(
        f"bare uvloop {version('uvloop')} app (pid {os.getpid()}) "
        f"listening on ws://{host}:{bound}/ws",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="bare uvloop floor for the benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(main(args.host, args.port))
