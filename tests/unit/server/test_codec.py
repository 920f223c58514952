"""The sans-I/O client frame decoder: ``FrameReader``, ``unmask`` and ``is_valid_close_code``.

Covers RFC 6455 parsing of masked client frames (whole, byte by byte, in random
splits with the mask carried across chunk boundaries), fragmentation with control
frames between fragments, empty frames and messages, 7/16/64-bit lengths, every
protocol failure with its close code (and nothing parsed after it), UTF-8
validation that fails fast, close frames, the soft limit (``OVERSIZE``, the
message discarded as it arrives) and the hard limit (1009), and permessage-deflate
(RFC 7692): compressed single-frame and fragmented messages, context takeover,
``client_no_context_takeover``, window bits, uncompressed messages on a deflate
connection, corrupt data, and deflate bombs inflated in bounded memory.
"""

from __future__ import annotations

import itertools
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable, Iterable
from unittest.mock import ANY

import pytest

from socketspec.server.codec import (
    OVERSIZE,
    DeflateParams,
    Event,
    Failure,
    FrameReader,
    PeerClose,
    Ping,
    is_valid_close_code,
    unmask,
)

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

KEY = b"\x37\xfa\x21\x3d"
SYNC_TAIL = b"\x00\x00\xff\xff"

SOFT = 1 << 16
HARD = 1 << 20


# -- helpers -------------------------------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes = KEY,
    masked: bool = True,
    length_form: int | None = None,
    length: int | None = None,
) -> bytes:
    """A client frame. ``length_form`` (7, 16 or 64) forces a length encoding;
    ``length`` overrides the declared length (the payload is still appended)."""
    if isinstance(payload, str):
        payload = payload.encode()
    declared = len(payload) if length is None else length
    if length_form is None:
        length_form = 7 if declared < 126 else 16 if declared < 1 << 16 else 64
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if length_form == 7:
        header = bytes((first, mask_bit | declared))
    elif length_form == 16:
        header = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if not masked:
        return header + payload
    return header + key + unmask(payload, key)


def close_frame(code: int | None = None, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode()
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(OP_CLOSE, payload)


def deflate(data: bytes | str, compressor: zlib._Compress | None = None, wbits: int = 15) -> bytes:
    """``data`` compressed as a permessage-deflate message (RFC 7692 7.2.1)."""
    if isinstance(data, str):
        data = data.encode()
    if compressor is None:
        compressor = zlib.compressobj(wbits=-wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(SYNC_TAIL)
    return out[:-4]


def reader(
    soft: int = SOFT, hard: int = HARD, deflate_params: DeflateParams | None = None
) -> FrameReader:
    return FrameReader(soft_limit=soft, hard_limit=hard, deflate=deflate_params)


def feed_chunks(decoder: FrameReader, chunks: Iterable[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, rng: random.Random) -> list[bytes]:
    chunks = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, rng.choice((3, 7, 16, 200, 5000)))
        chunks.append(data[pos : pos + size])
        pos += size
    return chunks


def failure(code: int) -> Failure:
    """A failure with ``code`` and any reason."""
    return Failure(code, ANY)


def assert_failed_and_deaf(decoder: FrameReader) -> None:
    """After a failure or the peer's close, nothing more is parsed."""
    assert decoder.ended
    assert decoder.feed(frame(OP_TEXT, "more")) == []
    assert decoder.feed(frame(OP_PING, b"p")) == []
    assert decoder.feed(close_frame(1000)) == []
    assert decoder.ended


def peak_memory_while(action: Callable[[], list[Event]]) -> tuple[list[Event], int]:
    """The events ``action`` returns and the peak of memory allocated while it ran."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = action()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# -- unmask and is_valid_close_code --------------------------------------------------------------


def test_unmask_of_nothing_is_nothing() -> None:
    assert unmask(b"", KEY) == b""


@pytest.mark.parametrize("size", [*range(0, 13), 125, 126, 1000, 65537])
def test_unmask_xors_with_the_repeated_key(size: int) -> None:
    data = bytes(random.Random(size).randbytes(size))
    expected = bytes(byte ^ KEY[i % 4] for i, byte in enumerate(data))
    assert unmask(data, KEY) == expected


def test_unmask_is_its_own_inverse() -> None:
    data = b"The quick brown fox \x00\xff\x80"
    assert unmask(unmask(data, KEY), KEY) == data
    assert unmask(data, b"\x00\x00\x00\x00") == data


@pytest.mark.parametrize(
    "code",
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999],
)
def test_close_codes_a_peer_may_send_are_valid(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize(
    "code",
    [0, 1, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535],
)
def test_reserved_and_unassigned_close_codes_are_invalid(code: int) -> None:
    assert not is_valid_close_code(code)


# -- whole messages ------------------------------------------------------------------------------


def test_masked_text_frame_in_one_piece_is_a_str() -> None:
    decoder = reader()
    assert decoder.feed(frame(OP_TEXT, "Hello, wörld €")) == ["Hello, wörld €"]
    assert not decoder.ended


def test_masked_binary_frame_in_one_piece_is_bytes() -> None:
    payload = bytes(range(256))
    assert reader().feed(frame(OP_BINARY, payload)) == [payload]


def test_several_frames_in_one_chunk_give_their_events_in_order() -> None:
    data = (
        frame(OP_TEXT, "one")
        + frame(OP_PING, b"p1")
        + frame(OP_BINARY, b"\x02")
        + frame(OP_PONG, b"ignored")
        + frame(OP_TEXT, "three")
    )
    assert reader().feed(data) == ["one", Ping(b"p1"), b"\x02", "three"]


def test_each_frame_uses_its_own_mask_key() -> None:
    data = frame(OP_TEXT, "abc", key=b"\x01\x02\x03\x04") + frame(
        OP_TEXT, "abc", key=b"\xff\x00\xaa\x55"
    )
    assert reader().feed(data) == ["abc", "abc"]


def test_an_all_zero_mask_key_leaves_the_payload_as_is() -> None:
    assert reader().feed(frame(OP_TEXT, "plain", key=b"\x00" * 4)) == ["plain"]


def test_empty_text_and_binary_frames_are_empty_messages() -> None:
    assert reader().feed(frame(OP_TEXT) + frame(OP_BINARY)) == ["", b""]


def test_empty_fragments_make_an_empty_message() -> None:
    data = frame(OP_TEXT, fin=False) + frame(OP_CONT, fin=False) + frame(OP_CONT)
    assert reader().feed(data) == [""]
    data = frame(OP_BINARY, fin=False) + frame(OP_CONT)
    assert reader().feed(data) == [b""]


def test_empty_fragments_inside_a_message_change_nothing() -> None:
    data = (
        frame(OP_TEXT, "ab", fin=False)
        + frame(OP_CONT, fin=False)
        + frame(OP_CONT, "cd", fin=False)
        + frame(OP_CONT)
    )
    assert reader().feed(data) == ["abcd"]


def test_ping_and_pong_payloads_are_unmasked_and_pongs_are_dropped() -> None:
    assert reader().feed(frame(OP_PING, b"\x00hello\xff")) == [Ping(b"\x00hello\xff")]
    assert reader().feed(frame(OP_PING)) == [Ping(b"")]
    assert reader().feed(frame(OP_PING, b"x" * 125)) == [Ping(b"x" * 125)]
    assert reader().feed(frame(OP_PONG, b"unsolicited")) == []


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000])
def test_lengths_in_7_16_and_64_bit_forms(size: int) -> None:
    payload = bytes(random.Random(size).randbytes(size))
    data = frame(OP_BINARY, payload)
    expected_header = 6 if size < 126 else 8 if size < 65536 else 14
    assert len(data) == expected_header + size
    assert reader(soft=HARD).feed(data) == [payload]
    # and in uneven chunks (7 is prime to the key length)
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert feed_chunks(reader(soft=HARD), chunks) == [payload]


def test_16_and_64_bit_lengths_for_text() -> None:
    text = "é" * 100  # 200 bytes: 16-bit length
    long_text = "ab€" * 30_000  # 150000 bytes: 64-bit length
    decoder = reader(soft=HARD, hard=HARD)
    assert decoder.feed(frame(OP_TEXT, text) + frame(OP_TEXT, long_text)) == [text, long_text]


# -- chunking: the same events however the bytes arrive ------------------------------------------

STREAM = b"".join(
    [
        frame(OP_TEXT, "hello"),
        frame(OP_BINARY, b"\x00\x01\x02\x03\x04\x05\x06"),
        frame(OP_TEXT, "frag", fin=False, key=b"\x11\x22\x33\x44"),
        frame(OP_PING, b"between", key=b"\x55\x66\x77\x88"),
        frame(OP_CONT, "men", fin=False, key=b"\x99\xaa\xbb\xcc"),
        frame(OP_PONG, b"pong"),
        frame(OP_CONT, "ted ✓"),
        frame(OP_TEXT, "x" * 300),
        frame(OP_BINARY, b"\xab" * 70_000),
        frame(OP_TEXT),
        frame(OP_PING),
        frame(OP_BINARY, b"bin", fin=False),
        frame(OP_CONT, b"ary"),
        close_frame(1000, "bye"),
    ]
)
STREAM_EVENTS: list[Event] = [
    "hello",
    b"\x00\x01\x02\x03\x04\x05\x06",
    Ping(b"between"),
    "fragmented ✓",
    "x" * 300,
    b"\xab" * 70_000,
    "",
    Ping(b""),
    b"binary",
    PeerClose(1000, "bye"),
]


def test_a_stream_of_frames_in_one_chunk() -> None:
    decoder = reader(soft=HARD)
    assert decoder.feed(STREAM) == STREAM_EVENTS
    assert decoder.ended


def test_a_stream_of_frames_fed_one_byte_at_a_time() -> None:
    decoder = reader(soft=HARD)
    assert feed_chunks(decoder, bytewise(STREAM)) == STREAM_EVENTS
    assert decoder.ended


@pytest.mark.parametrize("seed", range(20))
def test_a_stream_of_frames_in_random_splits(seed: int) -> None:
    decoder = reader(soft=HARD)
    assert feed_chunks(decoder, random_splits(STREAM, random.Random(seed))) == STREAM_EVENTS


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_a_frame_split_in_two_at_every_position(opcode: int) -> None:
    payload = "mask é carried €" if opcode == OP_TEXT else bytes(range(23))
    data = frame(opcode, payload, key=b"\xde\xad\xbe\xef")
    for cut in range(len(data) + 1):
        assert feed_chunks(reader(), [data[:cut], data[cut:]]) == [payload], cut


def test_a_frame_split_into_three_unaligned_chunks_keeps_the_mask_in_step() -> None:
    payload = bytes(range(40))
    data = frame(OP_BINARY, payload)
    for first in range(6, 20):
        for second in range(first, 30):
            chunks = [data[:first], data[first:second], data[second:]]
            assert feed_chunks(reader(), chunks) == [payload], (first, second)


def test_a_ping_in_pieces_gives_its_event_only_when_complete() -> None:
    decoder = reader()
    data = frame(OP_PING, b"abcdef")
    assert decoder.feed(data[:7]) == []
    assert decoder.feed(data[7:-1]) == []
    assert decoder.feed(data[-1:]) == [Ping(b"abcdef")]


def test_a_text_message_is_only_returned_when_its_last_byte_arrives() -> None:
    decoder = reader()
    data = frame(OP_TEXT, "partial")
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(data[-1:]) == ["partial"]


# -- fragmentation ------------------------------------------------------------------------------


def test_fragmented_text_with_pings_between_fragments() -> None:
    data = [
        frame(OP_TEXT, "Hel", fin=False),
        frame(OP_PING, b"1"),
        frame(OP_CONT, "lo, ", fin=False),
        frame(OP_PING, b"2"),
        frame(OP_PONG, b"3"),
        frame(OP_CONT, "world"),
    ]
    assert reader().feed(b"".join(data)) == [Ping(b"1"), Ping(b"2"), "Hello, world"]
    # frame by frame, each ping comes out as it arrives, before the message
    decoder = reader()
    assert [decoder.feed(part) for part in data] == [
        [],
        [Ping(b"1")],
        [],
        [Ping(b"2")],
        [],
        ["Hello, world"],
    ]


def test_fragmented_binary_with_a_ping_between_fragments() -> None:
    data = (
        frame(OP_BINARY, b"\x00\x01", fin=False)
        + frame(OP_CONT, b"\x02", fin=False)
        + frame(OP_PING, b"ping")
        + frame(OP_CONT, b"\x03\x04")
    )
    assert reader().feed(data) == [Ping(b"ping"), b"\x00\x01\x02\x03\x04"]


def test_a_message_after_a_fragmented_one_starts_clean() -> None:
    data = frame(OP_TEXT, "a", fin=False) + frame(OP_CONT, "b") + frame(OP_BINARY, b"c")
    assert reader().feed(data) == ["ab", b"c"]


def test_a_close_between_fragments_is_the_peer_closing() -> None:
    decoder = reader()
    data = frame(OP_TEXT, "half", fin=False) + close_frame(1001) + frame(OP_CONT, "rest")
    assert decoder.feed(data) == [PeerClose(1001, "")]
    assert_failed_and_deaf(decoder)


def test_fragments_with_16_and_64_bit_lengths() -> None:
    data = (
        frame(OP_BINARY, b"a" * 200, fin=False)
        + frame(OP_PING, b"!")
        + frame(OP_CONT, b"b" * 70_000, fin=False)
        + frame(OP_CONT, b"c")
    )
    expected: list[Event] = [Ping(b"!"), b"a" * 200 + b"b" * 70_000 + b"c"]
    assert reader(soft=HARD).feed(data) == expected
    assert feed_chunks(reader(soft=HARD), random_splits(data, random.Random(1))) == expected


# -- protocol failures --------------------------------------------------------------------------

PROTOCOL_ERRORS: dict[str, bytes] = {
    "unmasked text frame": frame(OP_TEXT, "hello", masked=False),
    "unmasked binary frame with 16-bit length": frame(OP_BINARY, b"x" * 200, masked=False),
    "16-bit length of 125": frame(OP_BINARY, b"x" * 125, length_form=16),
    "16-bit length of 0": frame(OP_TEXT, b"", length_form=16),
    "64-bit length of 65535": frame(OP_BINARY, b"x" * 65535, length_form=64),
    "64-bit length of 5": frame(OP_BINARY, b"hello", length_form=64),
    "64-bit length with the MSB set": frame(OP_BINARY, b"", length=(1 << 63) | 70_000),
    "64-bit length of 2**64-1": frame(OP_BINARY, b"", length=(1 << 64) - 1),
    "RSV1 without deflate": frame(OP_TEXT, "x", rsv=RSV1),
    "RSV2 without deflate": frame(OP_TEXT, "x", rsv=RSV2),
    "RSV3 without deflate": frame(OP_BINARY, b"x", rsv=RSV3),
    "all RSV bits without deflate": frame(OP_BINARY, b"x", rsv=RSV1 | RSV2 | RSV3),
    "RSV1 on a ping": frame(OP_PING, b"x", rsv=RSV1),
    "RSV2 on a close": frame(OP_CLOSE, b"", rsv=RSV2),
    **{f"opcode {op}": frame(op, b"x") for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)},
    **{f"empty non-final opcode {op}": frame(op, fin=False) for op in (3, 7, 11, 15)},
    "fragmented ping": frame(OP_PING, b"x", fin=False),
    "fragmented pong": frame(OP_PONG, b"x", fin=False),
    "fragmented close": frame(OP_CLOSE, b"", fin=False),
    "ping of 126 bytes": frame(OP_PING, b"x" * 126),
    "pong of 200 bytes": frame(OP_PONG, b"x" * 200),
    "close of 126 bytes": frame(OP_CLOSE, b"\x03\xe8" + b"x" * 124),
    "ping with a 64-bit length": frame(OP_PING, b"x" * 70_000),
    "continuation without a message": frame(OP_CONT, "x"),
    "final continuation without a message": frame(OP_CONT, b""),
    "text while a text message is open": frame(OP_TEXT, "a", fin=False) + frame(OP_TEXT, "b"),
    "binary while a text message is open": frame(OP_TEXT, "a", fin=False) + frame(OP_BINARY, b"b"),
    "text while a binary message is open": frame(OP_BINARY, b"a", fin=False)
    + frame(OP_CONT, b"b", fin=False)
    + frame(OP_TEXT, "c", fin=False),
    "close with a 1-byte payload": frame(OP_CLOSE, b"\x03"),
    **{
        f"close code {code}": close_frame(code)
        for code in (0, 999, 1004, 1005, 1006, 1014, 1015, 1016, 1100, 2000, 2999, 5000)
    },
}

UTF8_ERRORS: dict[str, bytes] = {
    "invalid byte in a text frame": frame(OP_TEXT, b"abc\xffdef"),
    "truncated sequence at the end of a text frame": frame(OP_TEXT, b"abc\xe2\x82"),
    "surrogate in a text frame": frame(OP_TEXT, b"\xed\xa0\x80"),
    "overlong encoding in a text frame": frame(OP_TEXT, b"\xc0\xaf"),
    "code point past U+10FFFF": frame(OP_TEXT, b"\xf4\x90\x80\x80"),
    "invalid byte in the last fragment": frame(OP_TEXT, "ok", fin=False) + frame(OP_CONT, b"\xff"),
    "message ending inside a sequence": frame(OP_TEXT, b"ok\xf0\x9f", fin=False)
    + frame(OP_CONT, b"\x98"),
    "invalid close reason": close_frame(1000, b"bye\xff"),
    "truncated close reason": close_frame(1000, b"\xe2\x82"),
}


@pytest.mark.parametrize(
    ("data", "code"),
    [pytest.param(data, 1002, id=name) for name, data in PROTOCOL_ERRORS.items()]
    + [pytest.param(data, 1007, id=name) for name, data in UTF8_ERRORS.items()],
)
def test_a_protocol_error_fails_with_its_code_and_nothing_after_it_is_parsed(
    data: bytes, code: int
) -> None:
    decoder = reader(soft=HARD, hard=HARD)
    before = frame(OP_TEXT, "before")
    after = frame(OP_TEXT, "after") + frame(OP_PING, b"p") + close_frame(1000)
    assert decoder.feed(before + data + after) == ["before", failure(code)]
    assert_failed_and_deaf(decoder)
    # alone, one byte at a time: the failure comes once, at the end of the bad bytes at the latest
    decoder = reader(soft=HARD, hard=HARD)
    assert feed_chunks(decoder, bytewise(data + after)) == [failure(code)]
    assert decoder.ended


@pytest.mark.parametrize("code", [1002, 1007, 1009])
def test_a_failure_carries_its_close_code_and_a_reason(code: int) -> None:
    cases = {
        1002: frame(OP_CONT, "x"),
        1007: frame(OP_TEXT, b"\xff"),
        1009: frame(OP_BINARY, b"x" * 11),
    }
    [event] = reader(soft=5, hard=10).feed(cases[code])
    assert isinstance(event, Failure)
    assert event.code == code
    assert isinstance(event.reason, str)
    assert event.reason


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(frame(OP_TEXT, b"", masked=False), id="empty text"),
        pytest.param(frame(OP_TEXT, b"hi", masked=False), id="2-byte text"),
        pytest.param(frame(OP_PING, b"", masked=False), id="empty ping"),
        pytest.param(frame(OP_CLOSE, b"\x03\xe8", masked=False), id="close 1000"),
    ],
)
def test_a_complete_unmasked_frame_shorter_than_a_masked_header_fails_at_once(
    data: bytes,
) -> None:
    # RFC 6455 5.1: the server MUST close upon receiving an unmasked frame. The frame is
    # whole; the client may send nothing more until it hears back.
    decoder = reader()
    assert decoder.feed(data) == [failure(1002)]
    assert decoder.ended


def test_a_frame_length_past_the_hard_limit_fails_from_its_header_alone() -> None:
    decoder = reader(soft=10, hard=100)
    header = frame(OP_BINARY, b"", length=101)
    assert decoder.feed(header) == [failure(1009)]
    assert_failed_and_deaf(decoder)


def test_a_continuation_after_a_finished_message_fails() -> None:
    decoder = reader()
    data = frame(OP_TEXT, "a") + frame(OP_CONT, "b") + frame(OP_TEXT, "c")
    assert decoder.feed(data) == ["a", failure(1002)]
    assert_failed_and_deaf(decoder)
    decoder = reader()
    assert feed_chunks(decoder, bytewise(data)) == ["a", failure(1002)]


def test_events_before_a_failure_in_the_same_chunk_are_kept() -> None:
    data = (
        frame(OP_PING, b"1")
        + frame(OP_TEXT, "a", fin=False)
        + frame(OP_CONT, "b")
        + frame(OP_BINARY, b"c")
        + frame(9 + 4, b"")  # opcode 13
        + frame(OP_TEXT, "never")
    )
    assert reader().feed(data) == [Ping(b"1"), "ab", b"c", failure(1002)]


def test_rsv_bits_other_than_rsv1_fail_even_with_deflate() -> None:
    params = DeflateParams()
    for rsv in (RSV2, RSV3, RSV1 | RSV2, RSV1 | RSV3):
        decoder = reader(deflate_params=params)
        assert decoder.feed(frame(OP_TEXT, deflate("x"), rsv=rsv)) == [failure(1002)], rsv


def test_rsv1_on_a_continuation_fails_with_deflate() -> None:
    decoder = reader(deflate_params=DeflateParams())
    compressed = deflate("hello world")
    data = frame(OP_TEXT, compressed[:4], fin=False, rsv=RSV1) + frame(
        OP_CONT, compressed[4:], rsv=RSV1
    )
    assert decoder.feed(data) == [failure(1002)]
    decoder = reader(deflate_params=DeflateParams())
    data = frame(OP_TEXT, "plain", fin=False) + frame(OP_CONT, deflate("x"), rsv=RSV1)
    assert decoder.feed(data) == [failure(1002)]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_rsv1_on_a_control_frame_fails_with_deflate(opcode: int) -> None:
    decoder = reader(deflate_params=DeflateParams())
    assert decoder.feed(frame(opcode, b"", rsv=RSV1)) == [failure(1002)]


# -- UTF-8 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x28\xa1"],
)
def test_invalid_utf8_in_the_first_fragment_fails_before_the_message_ends(bad: bytes) -> None:
    decoder = reader()
    assert decoder.feed(frame(OP_TEXT, b"valid start " + bad + b" more", fin=False)) == [
        failure(1007)
    ]
    assert_failed_and_deaf(decoder)


def test_invalid_utf8_in_a_middle_fragment_fails_before_the_message_ends() -> None:
    decoder = reader()
    assert decoder.feed(frame(OP_TEXT, "fine", fin=False)) == []
    assert decoder.feed(frame(OP_CONT, b"still \xe2\x82", fin=False)) == []
    assert decoder.feed(frame(OP_CONT, b"\x28", fin=False)) == [failure(1007)]


def test_invalid_utf8_in_a_partly_received_frame_fails_at_once() -> None:
    data = frame(OP_TEXT, b"a" * 10 + b"\xff" + b"b" * 70)
    half = len(data) // 2
    assert half > 6 + 10  # the header and the bad byte are in the first half
    decoder = reader()
    assert decoder.feed(data[:half]) == [failure(1007)]
    assert decoder.feed(data[half:]) == []
    assert decoder.ended


def test_invalid_utf8_fails_at_its_first_bad_byte_when_fed_byte_by_byte() -> None:
    data = frame(OP_TEXT, b"abc\xe2\x82\x28 and a lot more text after it")
    decoder = reader()
    bad_at = 6 + 5  # header + "abc" + the two bytes before the bad one
    results = [decoder.feed(data[i : i + 1]) for i in range(len(data))]
    assert results[bad_at] == [failure(1007)]
    assert all(result == [] for i, result in enumerate(results) if i != bad_at)


@pytest.mark.parametrize(
    ("text", "cuts"),
    [
        ("€", [1]),
        ("€", [2]),
        ("😀", [1, 2, 3]),
        ("a😀b€c", [2, 4, 7]),
        ("ünïcödé", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
    ],
)
def test_utf8_sequences_split_across_fragments_are_accepted(text: str, cuts: list[int]) -> None:
    raw = text.encode()
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    data = frame(OP_TEXT, pieces[0], fin=False)
    for piece in pieces[1:-1]:
        data += frame(OP_CONT, piece, fin=False) + frame(OP_PING, b"")
    data += frame(OP_CONT, pieces[-1])
    expected: list[Event] = [*[Ping(b"")] * (len(pieces) - 2), text]
    assert reader().feed(data) == expected
    assert feed_chunks(reader(), bytewise(data)) == expected


def test_utf8_sequences_split_across_chunks_of_one_frame_are_accepted() -> None:
    text = "€😀é" * 10
    data = frame(OP_TEXT, text)
    for cut in range(len(data) + 1):
        assert feed_chunks(reader(), [data[:cut], data[cut:]]) == [text], cut


# -- close frames -------------------------------------------------------------------------------


def test_an_empty_close_frame_is_a_close_without_status() -> None:
    decoder = reader()
    assert decoder.feed(close_frame()) == [PeerClose(None, "")]
    assert_failed_and_deaf(decoder)


@pytest.mark.parametrize(
    "code",
    [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 3999, 4000, 4999],
)
def test_close_frames_with_valid_codes_are_accepted(code: int) -> None:
    decoder = reader()
    assert decoder.feed(close_frame(code)) == [PeerClose(code, "")]
    assert decoder.ended


def test_a_close_reason_is_decoded_as_utf8() -> None:
    assert reader().feed(close_frame(4000, "au revoir, €😀")) == [PeerClose(4000, "au revoir, €😀")]
    reason = "r" * 123  # 125-byte payload, the most a control frame may carry
    assert reader().feed(close_frame(1000, reason)) == [PeerClose(1000, reason)]


def test_a_close_frame_in_pieces_is_returned_when_complete() -> None:
    decoder = reader()
    data = close_frame(1000, "bye")
    assert feed_chunks(decoder, bytewise(data)[:-1]) == []
    assert not decoder.ended
    assert decoder.feed(data[-1:]) == [PeerClose(1000, "bye")]


def test_input_after_the_peer_close_is_ignored_in_the_same_chunk_and_later() -> None:
    decoder = reader()
    data = frame(OP_TEXT, "a") + close_frame(1000) + frame(OP_TEXT, "b") + b"\x00garbage"
    assert decoder.feed(data) == ["a", PeerClose(1000, "")]
    assert decoder.ended
    assert decoder.feed(frame(OP_TEXT, "c")) == []
    assert decoder.feed(b"\xff" * 20) == []


def test_ended_is_false_until_a_close_or_a_failure() -> None:
    decoder = reader(soft=3)
    assert not decoder.ended
    decoder.feed(frame(OP_TEXT, "ok") + frame(OP_PING) + frame(OP_TEXT, "too long"))
    assert not decoder.ended
    assert decoder.feed(b"") == []
    assert not decoder.ended


# -- size limits --------------------------------------------------------------------------------


def test_a_message_at_the_soft_limit_passes_and_one_over_it_is_oversize() -> None:
    decoder = reader(soft=10, hard=100)
    assert decoder.feed(frame(OP_BINARY, b"x" * 10)) == [b"x" * 10]
    assert decoder.feed(frame(OP_BINARY, b"x" * 11)) == [OVERSIZE]
    assert decoder.feed(frame(OP_TEXT, "y" * 11)) == [OVERSIZE]
    assert not decoder.ended
    assert decoder.feed(frame(OP_TEXT, "next")) == ["next"]


def test_limits_count_utf8_bytes_not_characters() -> None:
    decoder = reader(soft=4, hard=100)
    assert decoder.feed(frame(OP_TEXT, "éé")) == ["éé"]  # 4 bytes
    assert decoder.feed(frame(OP_TEXT, "ééé")) == [OVERSIZE]  # 6 bytes
    assert decoder.feed(frame(OP_TEXT, "é", fin=False) + frame(OP_CONT, "éé")) == [OVERSIZE]


def test_an_oversize_fragmented_message_is_reported_when_it_ends() -> None:
    decoder = reader(soft=5, hard=100)
    assert decoder.feed(frame(OP_TEXT, "abc", fin=False)) == []
    assert decoder.feed(frame(OP_CONT, "def", fin=False)) == []
    assert decoder.feed(frame(OP_PING, b"p")) == [Ping(b"p")]
    assert decoder.feed(frame(OP_CONT, "ghi")) == [OVERSIZE]
    assert not decoder.ended
    # the next message starts clean
    assert decoder.feed(frame(OP_TEXT, "ok")) == ["ok"]
    assert decoder.feed(frame(OP_BINARY, b"12", fin=False) + frame(OP_CONT, b"345")) == [b"12345"]


def test_an_oversize_frame_received_in_pieces_is_reported_when_it_ends() -> None:
    decoder = reader(soft=5, hard=100)
    data = frame(OP_TEXT, "0123456789")
    assert feed_chunks(decoder, bytewise(data)) == [OVERSIZE]
    assert decoder.feed(frame(OP_TEXT, "small")) == ["small"]


def test_an_oversize_message_is_not_checked_for_utf8_past_the_soft_limit() -> None:
    # Discarded text is not kept, so it need not be decoded; the message is refused anyway.
    decoder = reader(soft=4, hard=100)
    assert decoder.feed(frame(OP_TEXT, b"abcdefgh")) == [OVERSIZE]
    assert decoder.feed(frame(OP_TEXT, "ok")) == ["ok"]


def test_an_oversize_message_is_discarded_as_it_arrives() -> None:
    # A 16 MiB binary message in 64 KiB fragments with a 1 KiB soft limit: the decoder's
    # memory stays small because the fragments past the limit are not kept.
    chunk = b"\x5a" * (64 << 10)
    first = frame(OP_BINARY, chunk, fin=False)
    middle = frame(OP_CONT, chunk, fin=False)
    last = frame(OP_CONT, chunk)
    decoder = reader(soft=1 << 10, hard=64 << 20)

    def run() -> list[Event]:
        events = decoder.feed(first)
        for _ in range(254):
            events += decoder.feed(middle)
        return events + decoder.feed(last)

    events, peak = peak_memory_while(run)
    assert events == [OVERSIZE]
    assert peak < 2 << 20, peak
    assert decoder.feed(frame(OP_TEXT, "after")) == ["after"]


def test_an_oversize_single_frame_arriving_in_pieces_is_discarded_as_it_arrives() -> None:
    size = 16 << 20
    chunk = unmask(b"\x00" * (64 << 10), KEY)  # zeros, masked (the chunk is a whole key multiple)
    header = frame(OP_BINARY, b"", length=size)
    decoder = reader(soft=1 << 10, hard=32 << 20)

    def run() -> list[Event]:
        events = decoder.feed(header)
        for _ in range(size // len(chunk)):
            events += decoder.feed(chunk)
        return events

    events, peak = peak_memory_while(run)
    assert events == [OVERSIZE]
    assert peak < 2 << 20, peak


def test_a_message_within_the_hard_limit_but_over_the_soft_one_is_only_oversize() -> None:
    decoder = reader(soft=10, hard=20)
    assert decoder.feed(frame(OP_BINARY, b"x" * 20)) == [OVERSIZE]
    assert decoder.feed(frame(OP_BINARY, b"x" * 10, fin=False) + frame(OP_CONT, b"x" * 10)) == [
        OVERSIZE
    ]
    assert not decoder.ended


def test_a_single_frame_over_the_hard_limit_fails_with_1009() -> None:
    decoder = reader(soft=5, hard=8)
    assert decoder.feed(frame(OP_TEXT, "x" * 9)) == [failure(1009)]
    assert_failed_and_deaf(decoder)


def test_a_fragmented_message_over_the_hard_limit_fails_before_it_ends() -> None:
    decoder = reader(soft=5, hard=8)
    assert decoder.feed(frame(OP_TEXT, "abcdef", fin=False)) == []
    assert decoder.feed(frame(OP_CONT, "ghi", fin=False)) == [failure(1009)]
    assert_failed_and_deaf(decoder)


def test_the_hard_limit_fails_as_soon_as_the_bytes_past_it_arrive() -> None:
    decoder = reader(soft=5, hard=8)
    data = frame(OP_BINARY, b"abcdef", fin=False) + frame(OP_CONT, b"ghijkl", fin=False)
    # 6 bytes + the continuation's header + 2 bytes: at the limit, no failure yet
    at_limit = len(frame(OP_BINARY, b"abcdef", fin=False)) + 6 + 2
    assert decoder.feed(data[:at_limit]) == []
    assert decoder.feed(data[at_limit : at_limit + 1]) == [failure(1009)]


# -- permessage-deflate -------------------------------------------------------------------------


def deflate_reader(
    soft: int = SOFT, hard: int = HARD, *, no_context_takeover: bool = False, window_bits: int = 15
) -> FrameReader:
    params = DeflateParams(
        client_no_context_takeover=no_context_takeover, client_max_window_bits=window_bits
    )
    return reader(soft, hard, params)


def test_a_compressed_text_message_in_one_frame() -> None:
    text = "Hello, compressed wörld! " * 20
    data = frame(OP_TEXT, deflate(text), rsv=RSV1)
    assert len(data) < len(text)
    assert deflate_reader().feed(data) == [text]


def test_a_compressed_binary_message_in_one_frame() -> None:
    payload = bytes(range(256)) * 8
    assert deflate_reader().feed(frame(OP_BINARY, deflate(payload), rsv=RSV1)) == [payload]


def test_an_empty_compressed_message() -> None:
    compressed = deflate(b"")
    assert compressed == b"\x00"
    assert deflate_reader().feed(frame(OP_TEXT, compressed, rsv=RSV1)) == [""]
    assert deflate_reader().feed(frame(OP_BINARY, compressed, rsv=RSV1)) == [b""]


def compressed_fragments(opcode: int, compressed: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(compressed)]
    pieces = [compressed[a:b] for a, b in itertools.pairwise(bounds)]
    frames = [frame(opcode, pieces[0], fin=len(pieces) == 1, rsv=RSV1)]
    for index, piece in enumerate(pieces[1:], start=2):
        frames.append(frame(OP_CONT, piece, fin=index == len(pieces)))
    return frames


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_a_compressed_fragmented_message_with_rsv1_on_the_first_frame_only(opcode: int) -> None:
    text = "fragmented and compressed € " * 50
    expected = text if opcode == OP_TEXT else text.encode()
    compressed = deflate(text)
    frames = compressed_fragments(opcode, compressed, [1, len(compressed) // 2])
    data = frames[0] + frame(OP_PING, b"mid") + frames[1] + frame(OP_PONG) + frames[2]
    assert deflate_reader().feed(data) == [Ping(b"mid"), expected]
    assert feed_chunks(deflate_reader(), bytewise(data)) == [Ping(b"mid"), expected]


def test_a_compressed_message_whose_last_fragment_is_empty() -> None:
    compressed = deflate("the end comes in an empty frame")
    data = frame(OP_TEXT, compressed, fin=False, rsv=RSV1) + frame(OP_CONT, b"")
    assert deflate_reader().feed(data) == ["the end comes in an empty frame"]


def test_a_compressed_message_whose_first_fragment_is_empty() -> None:
    compressed = deflate(b"\x01\x02\x03" * 100)
    data = frame(OP_BINARY, b"", fin=False, rsv=RSV1) + frame(OP_CONT, compressed)
    assert deflate_reader().feed(data) == [b"\x01\x02\x03" * 100]


def test_context_takeover_keeps_the_window_across_messages() -> None:
    compressor = zlib.compressobj(wbits=-15)
    text = "a sentence that repeats itself across messages, " * 4
    first = deflate(text, compressor)
    second = deflate(text, compressor)  # refers back to the first message
    third = deflate(text + "!", compressor)
    assert len(second) < len(first) // 2
    decoder = deflate_reader()
    data = [frame(OP_TEXT, part, rsv=RSV1) for part in (first, second, third)]
    assert decoder.feed(b"".join(data)) == [text, text, text + "!"]
    # the second message cannot be read without the first one's window
    assert deflate_reader().feed(data[1]) != [text]


def test_context_takeover_across_fragmented_messages_and_pings() -> None:
    compressor = zlib.compressobj(wbits=-15)
    messages = [f"message number {i} " * 30 for i in range(5)]
    data = b""
    for index, text in enumerate(messages):
        compressed = deflate(text, compressor)
        frames = compressed_fragments(OP_TEXT, compressed, [len(compressed) // 3])
        data += frames[0] + frame(OP_PING, bytes([index])) + frames[1]
    expected: list[Event] = []
    for index, text in enumerate(messages):
        expected += [Ping(bytes([index])), text]
    assert deflate_reader().feed(data) == expected
    for seed in range(5):
        chunks = random_splits(data, random.Random(seed))
        assert feed_chunks(deflate_reader(), chunks) == expected


def test_client_no_context_takeover_inflates_each_message_afresh() -> None:
    text = "each message on its own, " * 10
    data = b"".join(frame(OP_TEXT, deflate(text), rsv=RSV1) for _ in range(4))
    decoder = deflate_reader(no_context_takeover=True)
    assert decoder.feed(data) == [text] * 4


def test_client_no_context_takeover_with_fragmented_and_binary_messages() -> None:
    decoder = deflate_reader(no_context_takeover=True)
    payload = b"binary payload " * 40
    for _ in range(3):
        compressed = deflate(payload)
        frames = compressed_fragments(OP_BINARY, compressed, [3, 10])
        assert decoder.feed(b"".join(frames)) == [payload]
        assert decoder.feed(frame(OP_TEXT, deflate("t"), rsv=RSV1)) == ["t"]


@pytest.mark.parametrize("window_bits", range(9, 16))
def test_client_max_window_bits(window_bits: int) -> None:
    rng = random.Random(window_bits)
    words = [bytes(rng.randbytes(rng.randint(3, 12))).hex() for _ in range(200)]
    texts = [" ".join(rng.choice(words) for _ in range(2000)) for _ in range(3)]
    compressor = zlib.compressobj(wbits=-window_bits)
    data = b""
    for text in texts:
        compressed = deflate(text, compressor)
        frames = compressed_fragments(OP_TEXT, compressed, [len(compressed) // 2])
        data += b"".join(frames)
    decoder = deflate_reader(soft=HARD, window_bits=window_bits)
    assert decoder.feed(data) == texts
    decoder = deflate_reader(soft=HARD, window_bits=window_bits)
    assert feed_chunks(decoder, random_splits(data, rng)) == texts


@pytest.mark.parametrize("window_bits", range(9, 16))
def test_client_max_window_bits_without_context_takeover(window_bits: int) -> None:
    text = "".join(f"{i:05d}," for i in range(3000))
    data = b"".join(frame(OP_TEXT, deflate(text, wbits=window_bits), rsv=RSV1) for _ in range(2))
    decoder = deflate_reader(soft=HARD, no_context_takeover=True, window_bits=window_bits)
    assert decoder.feed(data) == [text, text]


# The examples of RFC 7692 section 7.2.3, as client payloads.
RFC7692_HELLO = bytes.fromhex("f248cdc9c90700")  # 7.2.3.1: "Hello"
RFC7692_HELLO_AGAIN = bytes.fromhex("f200110000")  # 7.2.3.2: "Hello" from the shared window
RFC7692_TWO_BLOCKS = bytes.fromhex("f24805000000ffffcac9c90700")  # 7.2.3.4
RFC7692_STORED = bytes.fromhex("000500faff48656c6c6f00")  # 7.2.3.5: no compression
RFC7692_BFINAL = bytes.fromhex("f348cdc9c9070000")  # 7.2.3.3: "Hello" with BFINAL set


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(RFC7692_HELLO, id="7.2.3.1"),
        pytest.param(RFC7692_TWO_BLOCKS, id="7.2.3.4"),
        pytest.param(RFC7692_STORED, id="7.2.3.5"),
        pytest.param(RFC7692_BFINAL, id="7.2.3.3"),
    ],
)
def test_the_rfc7692_examples_inflate_to_hello(payload: bytes) -> None:
    assert deflate_reader().feed(frame(OP_TEXT, payload, rsv=RSV1)) == ["Hello"]


def test_the_rfc7692_shared_window_example() -> None:
    data = frame(OP_TEXT, RFC7692_HELLO, rsv=RSV1) + frame(OP_TEXT, RFC7692_HELLO_AGAIN, rsv=RSV1)
    assert deflate_reader().feed(data) == ["Hello", "Hello"]


def test_messages_ending_with_bfinal_without_context_takeover() -> None:
    # RFC 7692 7.2.3.3: a client may flush with a BFINAL block instead of an empty stored one.
    data = frame(OP_TEXT, RFC7692_BFINAL, rsv=RSV1) * 2 + frame(OP_TEXT, deflate("x"), rsv=RSV1)
    decoder = deflate_reader(no_context_takeover=True)
    assert decoder.feed(data) == ["Hello", "Hello", "x"]


def test_messages_after_one_ending_with_bfinal_with_context_takeover() -> None:
    # RFC 7692 7.2.3.3 allows the BFINAL flush, and 7.2.2 has the server inflate each new
    # message with the window of the last one: the next messages are not lost.
    data = frame(OP_TEXT, RFC7692_BFINAL, rsv=RSV1) * 2 + frame(OP_TEXT, deflate("x"), rsv=RSV1)
    assert deflate_reader().feed(data) == ["Hello", "Hello", "x"]


def test_uncompressed_messages_are_allowed_when_deflate_is_negotiated() -> None:
    compressor = zlib.compressobj(wbits=-15)
    data = (
        frame(OP_TEXT, "plain text")
        + frame(OP_TEXT, deflate("compressed text", compressor), rsv=RSV1)
        + frame(OP_BINARY, b"plain", fin=False)
        + frame(OP_CONT, b" binary")
        + frame(OP_TEXT, deflate("compressed text", compressor), rsv=RSV1)
        + frame(OP_TEXT)
    )
    expected: list[Event] = [
        "plain text",
        "compressed text",
        b"plain binary",
        "compressed text",
        "",
    ]
    assert deflate_reader().feed(data) == expected
    assert feed_chunks(deflate_reader(), bytewise(data)) == expected


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(b"\xff\xff\xff\xff", id="reserved block type"),
        pytest.param(b"\x00\x05\x00\x00\x00hello", id="stored length check fails"),
        pytest.param(b"\x04\xc0\x81\x08\x00\x00\x00\x00", id="bad code lengths"),
    ],
)
def test_corrupt_compressed_data_fails_with_1007(corrupt: bytes) -> None:
    decoder = deflate_reader()
    data = frame(OP_TEXT, corrupt, rsv=RSV1) + frame(OP_TEXT, "after")
    assert decoder.feed(data) == [failure(1007)]
    assert_failed_and_deaf(decoder)


def test_corrupt_compressed_data_in_a_later_fragment_fails_with_1007() -> None:
    compressed = deflate("good start")
    decoder = deflate_reader()
    assert decoder.feed(frame(OP_TEXT, compressed, fin=False, rsv=RSV1)) == []
    assert decoder.feed(frame(OP_CONT, b"\xff\xff\xff\xff", fin=False)) == [failure(1007)]


def test_compressed_text_with_invalid_utf8_fails_with_1007() -> None:
    decoder = deflate_reader()
    assert decoder.feed(frame(OP_TEXT, deflate(b"bad \xff text"), rsv=RSV1)) == [failure(1007)]
    # and it fails in the first fragment, before the message ends
    decoder = deflate_reader()
    compressed = deflate(b"invalid \xc0\xaf" + b"x" * 100)
    assert decoder.feed(frame(OP_TEXT, compressed, fin=False, rsv=RSV1)) == [failure(1007)]


def test_compressed_binary_may_hold_any_bytes() -> None:
    payload = b"\xff\xfe\xc0\xaf\xed\xa0\x80"
    assert deflate_reader().feed(frame(OP_BINARY, deflate(payload), rsv=RSV1)) == [payload]


def test_the_soft_limit_counts_inflated_bytes() -> None:
    decoder = deflate_reader(soft=100, hard=10_000)
    assert decoder.feed(frame(OP_TEXT, deflate("a" * 100), rsv=RSV1)) == ["a" * 100]
    small = deflate("a" * 101)
    assert len(small) < 100
    assert decoder.feed(frame(OP_TEXT, small, rsv=RSV1)) == [OVERSIZE]
    assert not decoder.ended


def test_an_oversize_compressed_message_keeps_the_inflater_in_step() -> None:
    compressor = zlib.compressobj(wbits=-15)
    first = deflate(b"a" * 50_000, compressor)
    second = deflate(b"next", compressor)
    decoder = deflate_reader(soft=101, hard=1_000_000)
    data = frame(OP_BINARY, first, rsv=RSV1) + frame(OP_BINARY, second, rsv=RSV1)
    assert decoder.feed(data) == [OVERSIZE, b"next"]


def test_the_hard_limit_counts_inflated_bytes() -> None:
    decoder = deflate_reader(soft=100, hard=1000)
    compressed = deflate(b"a" * 1001)
    assert len(compressed) < 100
    assert decoder.feed(frame(OP_BINARY, compressed, rsv=RSV1)) == [failure(1009)]
    assert_failed_and_deaf(decoder)


def test_a_compressed_frame_longer_than_the_hard_limit_fails_from_its_header() -> None:
    decoder = deflate_reader(soft=10, hard=100)
    assert decoder.feed(frame(OP_TEXT, b"", rsv=RSV1, length=101)) == [failure(1009)]


def deflate_bomb() -> bytes:
    """64 MiB of zeros compressed: about 64 KiB."""
    compressor = zlib.compressobj(wbits=-15)
    zeros = b"\x00" * (1 << 20)
    out = b"".join(compressor.compress(zeros) for _ in range(64))
    out += compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(SYNC_TAIL)
    return out[:-4]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = deflate_bomb()
    assert len(data) < 100_000
    return data


def test_a_deflate_bomb_fails_with_1009_without_being_inflated(bomb: bytes) -> None:
    decoder = deflate_reader(soft=1000, hard=1 << 20)
    data = frame(OP_BINARY, bomb, rsv=RSV1)
    events, peak = peak_memory_while(lambda: decoder.feed(data))
    assert events == [failure(1009)]
    assert peak < 1 << 20, peak  # less than the hard limit, let alone 64 MiB
    assert_failed_and_deaf(decoder)


def test_a_fragmented_deflate_bomb_fails_with_1009_before_it_ends(bomb: bytes) -> None:
    decoder = deflate_reader(soft=1000, hard=1 << 20)
    frames = compressed_fragments(OP_TEXT, bomb, [len(bomb) // 4, len(bomb) // 2])
    assert decoder.feed(frames[0]) == [failure(1009)]


def test_a_deflate_bomb_under_a_large_hard_limit_is_oversize_in_bounded_memory(
    bomb: bytes,
) -> None:
    compressor = zlib.compressobj(wbits=-15)
    zeros = b"\x00" * (1 << 20)
    bomb_with_context = b"".join(compressor.compress(zeros) for _ in range(64))
    bomb_with_context += compressor.flush(zlib.Z_SYNC_FLUSH)
    after = deflate(b"after the bomb", compressor)
    decoder = deflate_reader(soft=1000, hard=1 << 30)
    data = frame(OP_BINARY, bomb_with_context[:-4], rsv=RSV1) + frame(OP_BINARY, after, rsv=RSV1)
    events, peak = peak_memory_while(lambda: decoder.feed(data))
    assert events == [OVERSIZE, b"after the bomb"]
    assert peak < 2 << 20, peak
    assert not decoder.ended
    # the same bomb in random splits
    decoder = deflate_reader(soft=1000, hard=1 << 30)
    data = frame(OP_TEXT, bomb, rsv=RSV1)
    assert feed_chunks(decoder, random_splits(data, random.Random(7))) == [OVERSIZE]
