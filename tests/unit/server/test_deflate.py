"""Bounded permessage-deflate inflation."""

from __future__ import annotations

import zlib

from wsproto.frame_protocol import CloseReason, FrameDecoder, Opcode, RsvBits

from socketspec.server.deflate import BoundedDeflate


def compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def negotiated(keep: int, hard: int) -> BoundedDeflate:
    extension = BoundedDeflate(keep, hard)
    assert extension.accept("permessage-deflate") is not None  # "" accepts with no parameters
    return extension


def inflate_message(extension: BoundedDeflate, body: bytes) -> bytes | CloseReason:
    proto = FrameDecoder(client=False, extensions=[extension])
    rsv = RsvBits(True, False, False)
    assert extension.frame_inbound_header(proto, Opcode.TEXT, rsv, len(body)) == rsv
    first = extension.frame_inbound_payload_data(proto, body)
    if isinstance(first, CloseReason):
        return first
    rest = extension.frame_inbound_complete(proto, True)
    if isinstance(rest, CloseReason):
        return rest
    return first + (rest or b"")


def test_small_message_inflates_fully() -> None:
    extension = negotiated(keep=1000, hard=10_000)
    assert inflate_message(extension, compress(b"hello " * 10)) == b"hello " * 10


def test_output_past_keep_is_discarded_but_context_stays_in_step() -> None:
    extension = negotiated(keep=101, hard=1_000_000)
    result = inflate_message(extension, compress(b"a" * 50_000))
    assert isinstance(result, bytes)
    assert len(result) == 101  # enough for the connection to see "over the soft limit"
    # the next message on the same (context-takeover) stream still inflates correctly
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"a" * 50_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
    second = compressor.compress(b"next") + compressor.flush(zlib.Z_SYNC_FLUSH)
    extension = negotiated(keep=101, hard=1_000_000)
    inflate_message(extension, first[:-4])
    assert inflate_message(extension, second[:-4]) == b"next"


def test_deflate_bomb_closes_with_1009_without_inflating_it() -> None:
    extension = negotiated(keep=1000, hard=1 << 20)
    bomb = compress(b"\x00" * (64 << 20))  # 64 MiB of zeros, about 64 KiB compressed
    assert len(bomb) < 100_000
    assert inflate_message(extension, bomb) is CloseReason.MESSAGE_TOO_BIG


def test_corrupt_data_is_invalid_payload() -> None:
    extension = negotiated(keep=1000, hard=10_000)
    assert inflate_message(extension, b"\xff\xff\xff\xff") is CloseReason.INVALID_FRAME_PAYLOAD_DATA
