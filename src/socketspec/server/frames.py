"""Server-to-client WebSocket frame encoding, sans-I/O.

Owns building the bytes of unmasked, unfragmented server frames, and the
one-entry cache that lets a broadcast frame its payload once per shard: the
room store hands the same ``bytes`` object to every local member, so framing
it for the second member onwards is an identity check. Does not own parsing
(``codec`` does) or any socket.
"""

from __future__ import annotations

import struct
import zlib

from socketspec.server.opcodes import OP_CLOSE, OP_TEXT

_FIN = 0x80
_U16 = struct.Struct("!BBH")
_U64 = struct.Struct("!BBQ")
_CODE = struct.Struct("!H")
_RSV1 = 0x40
_SYNC_TAIL = b"\x00\x00\xff\xff"


def frame_header(opcode: int, length: int) -> bytes:
    first = _FIN | opcode
    if length < 126:
        return bytes((first, length))
    if length < 1 << 16:
        return _U16.pack(first, 126, length)
    return _U64.pack(first, 127, length)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    return frame_header(opcode, len(payload)) + payload


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; the reason is cut to fit a control frame (123 bytes of UTF-8)."""
    payload = _CODE.pack(code) + reason.encode()[:123].decode("utf-8", "ignore").encode()
    return frame_header(OP_CLOSE, len(payload)) + payload


def text_frame(payload: bytes) -> bytes:
    """A text frame around ``payload``, which must already be UTF-8."""
    return frame_header(OP_TEXT, len(payload)) + payload


class MessageDeflater:
    """Compresses whole server messages for one connection (permessage-deflate, RFC 7692)."""

    __slots__ = ("_compressor", "_no_context_takeover", "_window_bits")

    def __init__(self, no_context_takeover: bool, max_window_bits: int) -> None:
        self._no_context_takeover = no_context_takeover
        self._window_bits = max_window_bits
        self._compressor: zlib._Compress | None = None

    def frame(self, opcode: int, payload: bytes) -> bytes:
        """One compressed frame (RSV1 set) carrying ``payload``."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self._window_bits
            )
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if data.endswith(_SYNC_TAIL):
            data = data[:-4]
        self._compressor = None if self._no_context_takeover else compressor
        header = bytearray(frame_header(opcode, len(data)))
        header[0] |= _RSV1
        return bytes(header) + data


class FrameCache:
    """Frames the most recent payload once; a broadcast reuses it for every member."""

    __slots__ = ("_frame", "_payload")

    def __init__(self) -> None:
        self._payload: bytes | None = None
        self._frame = b""

    def text(self, payload: bytes) -> bytes:
        if payload is self._payload:
            return self._frame
        frame = text_frame(payload)
        # Holding the payload keeps its id from being reused by another object.
        self._payload = payload
        self._frame = frame
        return frame
