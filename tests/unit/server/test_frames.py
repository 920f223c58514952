"""Server frame encoding and the frame-once cache."""

from __future__ import annotations

import struct

import pytest
from wsproto.frame_protocol import FrameDecoder, Opcode

from socketspec.server import frames, opcodes


def decode_one(data: bytes) -> tuple[Opcode, bytes, bool]:
    decoder = FrameDecoder(client=True)
    decoder.receive_bytes(data)
    frame = decoder.process_buffer()
    assert frame is not None
    return frame.opcode, bytes(frame.payload), frame.frame_finished


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_text_frames_decode_with_a_real_parser(size: int) -> None:
    payload = b"x" * size
    opcode, decoded, finished = decode_one(frames.text_frame(payload))
    assert opcode is Opcode.TEXT
    assert decoded == payload
    assert finished


def test_header_lengths_follow_rfc6455() -> None:
    assert frames.frame_header(opcodes.OP_TEXT, 125) == bytes((0x81, 125))
    assert frames.frame_header(opcodes.OP_TEXT, 126) == struct.pack("!BBH", 0x81, 126, 126)
    assert frames.frame_header(opcodes.OP_BINARY, 1 << 16) == struct.pack(
        "!BBQ", 0x82, 127, 1 << 16
    )


def test_cache_frames_one_payload_once() -> None:
    cache = frames.FrameCache()
    payload = b'{"event":"x","payload":{}}'
    first = cache.text(payload)
    assert cache.text(payload) is first  # the same object: no second framing


def test_cache_tells_equal_but_distinct_payloads_apart() -> None:
    cache = frames.FrameCache()
    first = cache.text(b'{"a":1}')
    other = bytes(bytearray(b'{"a":2}'))
    second = cache.text(other)
    assert second is not first
    assert decode_one(second)[1] == b'{"a":2}'
