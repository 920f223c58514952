"""What a client sends on an open WebSocket connection, decoded: sans-I/O.

Owns parsing masked client frames (RFC 6455 section 5) and every check the
RFC asks of a server on them: masking, reserved bits, opcodes, minimal length
encodings, control frames (unfragmented, at most 125 bytes, allowed between
fragments), continuation rules, close codes and reasons; reassembly of
fragmented messages within two limits (past the soft limit a message is
discarded as it arrives and reported as ``OVERSIZE`` when it ends, past the
hard limit the connection fails with 1009 at once); permessage-deflate
inflation with bounded output (RFC 7692: a small deflate bomb cannot grow
memory); UTF-8 validation of text as it arrives, so that a fragmented or
partly received message with invalid text fails at its first bad byte (1007).

``FrameReader.feed`` takes bytes and returns events: ``str`` (a text message),
``bytes`` (a binary message), ``OVERSIZE``, ``Ping``, ``PeerClose`` or
``Failure``. After a failure or the peer's close it ignores further input.
Payload bytes are held only while a message is incomplete and within the soft
limit; partial frame headers and partial control frames (at most 131 bytes)
are the only other bytes kept.

Does not own the opening handshake or the extension negotiation (wsproto does,
in ``protocol``), building server frames (``frames``), the opcode numbers (``opcodes``), or
any socket.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from socketspec.errors import CloseCode
from socketspec.server.opcodes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
)


class Oversize:
    """A message was discarded for exceeding the soft limit."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OVERSIZE"


OVERSIZE: Final = Oversize()


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerClose:
    """The peer's close frame: ``code`` is None when it carried no status."""

    code: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke the protocol: close with ``code`` and read nothing more."""

    code: int
    reason: str


Event = str | bytes | Oversize | Ping | PeerClose | Failure


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """What the permessage-deflate negotiation settled (RFC 7692 section 7.1)."""

    client_no_context_takeover: bool = False
    client_max_window_bits: int = 15
    server_no_context_takeover: bool = False
    server_max_window_bits: int = 15


# Codes a peer may send (RFC 6455 section 7.4; 1004-1006 and 1015 are never sent).
_PROTOCOL_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013}
)
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_RSV1 = 0x40
# Inflate in bounded steps so a deflate bomb is caught before it is in memory.
_INFLATE_CHUNK = 64 * 1024
_SYNC_TAIL = b"\x00\x00\xff\xff"
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


def unmask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``key``: one big-integer XOR, no Python loop."""
    size = len(data)
    if not size:
        return b""
    repeated = key * ((size >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated[:size], "little")).to_bytes(
        size, "little"
    )


def is_valid_close_code(code: int) -> bool:
    return code in _PROTOCOL_CLOSE_CODES or 3000 <= code <= 4999


class FrameReader:
    __slots__ = (
        "_buffer",
        "_compressed",
        "_deflate",
        "_ended",
        "_failure",
        "_fin",
        "_hard_limit",
        "_inflater",
        "_key",
        "_key_offset",
        "_message_opcode",
        "_parts",
        "_remaining",
        "_size",
        "_soft_limit",
        "_text",
        "_window",
    )

    def __init__(
        self, soft_limit: int, hard_limit: int, deflate: DeflateParams | None = None
    ) -> None:
        self._soft_limit = soft_limit
        self._hard_limit = hard_limit
        self._deflate = deflate
        self._inflater: zlib._Decompress | None = None
        self._window = b""  # the deflate window, to go on after a final block
        self._buffer = b""  # an incomplete frame header or control frame
        self._ended = False
        self._failure: Failure | None = None
        # The data frame whose payload is still arriving.
        self._remaining = 0
        self._fin = False
        self._key = b""
        self._key_offset = 0
        # The message being reassembled (opcode 0: none).
        self._message_opcode = 0
        self._compressed = False
        self._parts: list[bytes] | list[str] | None = None  # None: discarding (oversize)
        self._text: codecs.IncrementalDecoder | None = None
        self._size = 0

    @property
    def ended(self) -> bool:
        """A failure or the peer's close was returned: nothing more is parsed."""
        return self._ended

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._ended or not data:
            return events
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        pos = 0
        end = len(data)
        while pos < end and not self._ended:
            if self._remaining:  # the payload of a data frame still arriving
                take = min(self._remaining, end - pos)
                self._remaining -= take
                self._frame_payload(data[pos : pos + take], events)
                pos += take
                continue
            if end - pos < 2:
                self._buffer = data[pos:]
                break
            first = data[pos]
            second = data[pos + 1]
            if not second & 0x80:
                self._fail(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
                break
            length = second & 0x7F
            header = 6 if length < 126 else 8 if length == 126 else 14
            if end - pos < header:
                self._buffer = data[pos:]
                break
            if length == 126:
                length = _U16.unpack_from(data, pos + 2)[0]
                if length < 126:
                    self._fail(CloseCode.PROTOCOL_ERROR, "frame length not minimally encoded")
                    break
            elif length == 127:
                length = _U64.unpack_from(data, pos + 2)[0]
                if length < 1 << 16 or length >> 63:
                    self._fail(CloseCode.PROTOCOL_ERROR, "invalid 64-bit frame length")
                    break
            opcode = first & 0x0F
            fin = first & 0x80
            rsv = first & 0x70
            if opcode >= OP_CLOSE:
                if opcode > OP_PONG:
                    self._fail(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
                elif rsv:
                    self._fail(CloseCode.PROTOCOL_ERROR, "reserved bits set on a control frame")
                elif not fin:
                    self._fail(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
                elif length > 125:
                    self._fail(CloseCode.PROTOCOL_ERROR, "control frame longer than 125 bytes")
                if self._ended:
                    break
                if end - pos - header < length:
                    self._buffer = data[pos:]  # at most 131 bytes
                    break
                start = pos + header
                payload = unmask(data[start : start + length], data[start - 4 : start])
                pos = start + length
                self._control(opcode, payload, events)
                continue
            compressed = False
            if opcode == OP_CONTINUATION:
                if not self._message_opcode:
                    self._fail(CloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                elif rsv:
                    self._fail(CloseCode.PROTOCOL_ERROR, "reserved bits set on a continuation")
            elif opcode <= OP_BINARY:
                if self._message_opcode:
                    self._fail(CloseCode.PROTOCOL_ERROR, "new message before the last one ended")
                elif rsv:
                    if rsv != _RSV1 or self._deflate is None:
                        self._fail(CloseCode.PROTOCOL_ERROR, "reserved bits set")
                    compressed = True
            else:
                self._fail(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if self._ended:
                break
            if length > self._hard_limit:
                self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
                break
            start = pos + header
            if opcode and fin and not compressed and end - start >= length:
                # The common case, a whole message in one frame: no reassembly state.
                pos = start + length
                if length > self._soft_limit:
                    events.append(OVERSIZE)
                    continue
                payload = unmask(data[start:pos], data[start - 4 : start])
                if opcode == OP_BINARY:
                    events.append(payload)
                    continue
                try:
                    events.append(payload.decode())
                except UnicodeDecodeError:
                    self._fail(CloseCode.INVALID_UTF8, "invalid UTF-8 in a text message")
                continue
            if opcode:
                self._begin_message(opcode, compressed)
            self._fin = bool(fin)
            self._key = data[start - 4 : start]
            self._key_offset = 0
            self._remaining = length
            pos = start
            if not length:
                self._frame_payload(b"", events)
        if self._failure is not None:
            events.append(self._failure)
            self._failure = None
        return events

    # -- data frames -----------------------------------------------------------------------------

    def _begin_message(self, opcode: int, compressed: bool) -> None:
        self._message_opcode = opcode
        self._compressed = compressed
        self._size = 0
        self._parts = []
        self._text = _Utf8Decoder() if opcode == OP_TEXT else None
        if compressed and self._inflater is None:
            params = self._deflate
            assert params is not None
            self._inflater = zlib.decompressobj(-params.client_max_window_bits)

    def _frame_payload(self, chunk: bytes, events: list[Event]) -> None:
        """Part (or all) of the current data frame's payload, still masked."""
        offset = self._key_offset
        key = self._key
        if chunk:
            if offset:
                key = key[offset:] + key[:offset]
            self._key_offset = (offset + len(chunk)) & 3
            chunk = unmask(chunk, key)
        last = not self._remaining and self._fin
        if self._compressed:
            if not self._inflate(chunk + _SYNC_TAIL if last else chunk):
                return
        elif chunk and not self._content(chunk):
            return
        if last:
            self._end_message(events)

    def _inflate(self, data: bytes) -> bool:
        inflater = self._inflater
        assert inflater is not None
        params = self._deflate
        assert params is not None
        keep_window = not params.client_no_context_takeover
        pending = data
        try:
            while True:
                chunk = inflater.decompress(pending, _INFLATE_CHUNK)
                if chunk:
                    if keep_window:
                        self._window = (self._window + chunk)[
                            -(1 << params.client_max_window_bits) :
                        ]
                    if not self._content(chunk):
                        return False
                pending = inflater.unconsumed_tail
                if inflater.eof:
                    # A message may end with a final deflate block (RFC 7692 section 7.2.3.3);
                    # the next one still uses the window, so go on with a fresh inflater
                    # primed with it.
                    pending = inflater.unused_data + pending
                    inflater = self._inflater = (
                        zlib.decompressobj(-params.client_max_window_bits, zdict=self._window)
                        if keep_window
                        else zlib.decompressobj(-params.client_max_window_bits)
                    )
                    if not pending:
                        break
                    continue
                # A full chunk may leave output inside zlib even with no input left.
                if not pending and len(chunk) < _INFLATE_CHUNK:
                    break
        except zlib.error:
            self._fail(CloseCode.INVALID_UTF8, "invalid compressed data")
            return False
        return True

    def _content(self, chunk: bytes) -> bool:
        """Message bytes (inflated, unmasked): count, keep or discard, validate text."""
        self._size += len(chunk)
        if self._size > self._hard_limit:
            self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return False
        parts = self._parts
        if parts is None:
            return True
        if self._size > self._soft_limit:
            self._parts = None  # discard the rest as it arrives
            self._text = None
            return True
        text = self._text
        if text is None:
            parts.append(chunk)  # type: ignore[arg-type]
            return True
        try:
            decoded = text.decode(chunk)
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_UTF8, "invalid UTF-8 in a text message")
            return False
        if decoded:
            parts.append(decoded)  # type: ignore[arg-type]
        return True

    def _end_message(self, events: list[Event]) -> None:
        parts = self._parts
        text = self._text
        deflate = self._deflate
        if self._compressed and deflate is not None and deflate.client_no_context_takeover:
            self._inflater = None
        self._message_opcode = 0
        self._parts = None
        self._text = None
        if parts is None:
            events.append(OVERSIZE)
        elif text is not None:
            try:
                tail = text.decode(b"", True)
            except UnicodeDecodeError:
                self._fail(CloseCode.INVALID_UTF8, "invalid UTF-8 in a text message")
                return
            events.append("".join(parts) + tail)  # type: ignore[arg-type]
        else:
            events.append(b"".join(parts))  # type: ignore[arg-type]

    # -- control frames --------------------------------------------------------------------------

    def _control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == OP_PING:
            events.append(Ping(payload))
            return
        if opcode == OP_PONG:
            return  # unsolicited pongs are allowed and mean nothing
        self._ended = True
        if not payload:
            events.append(PeerClose(None, ""))
            return
        if len(payload) == 1:
            self._fail(CloseCode.PROTOCOL_ERROR, "close frame with a 1-byte payload")
            return
        code = _U16.unpack_from(payload)[0]
        if not is_valid_close_code(code):
            self._fail(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
            return
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            self._fail(CloseCode.INVALID_UTF8, "invalid UTF-8 in a close reason")
            return
        events.append(PeerClose(code, reason))

    def _fail(self, code: int, reason: str) -> None:
        """Stop parsing; ``feed`` returns the failure after the events before it."""
        self._ended = True
        self._failure = Failure(code, reason)
