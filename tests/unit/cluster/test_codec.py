"""The link codec: every message survives encode and decode in any chunking, the frame
blob travels as raw bytes, and bytes that are not a valid frame raise the codec's own
error (never another exception), with nothing decoded from them."""

from __future__ import annotations

import struct

import orjson
import pytest

from socketspec.cluster.codec import (
    MAX_FRAME,
    MESSAGES,
    Alive,
    BootFailed,
    Deliver,
    EmitTo,
    ExistsRequest,
    Goodbye,
    Handover,
    Hello,
    HistorySync,
    JoinRequest,
    Kick,
    Leave,
    LinkDecoder,
    LinkMessage,
    LinkProtocolError,
    MembersRequest,
    Positioned,
    Publish,
    Ready,
    RecoverReply,
    RecoverRequest,
    Rejoin,
    Reply,
    Resume,
    encode,
    join_frames,
    split_frames,
)

FRAME = b'\x00\xff{"event":"x"}\n'  # arbitrary bytes: never parsed as JSON

SAMPLES: list[LinkMessage] = [
    Hello(2, 7),
    JoinRequest(1, "hall", "c1", 10, {"user_id": "u", "scopes": ["a"]}),
    Reply(1, [["c1", 0, {}, ""]]),
    Reply(2, None),
    Leave("hall", "c1"),
    Publish("hall", ["c2"], FRAME, 3, "node:1.2.3"),
    Publish("hall", [], FRAME),
    Deliver("hall", [], None, FRAME, 0, "o"),
    Deliver(None, ["c1"], "/chat", FRAME, 4),
    EmitTo(5, "c1", FRAME),
    Kick("c1", "bye"),
    MembersRequest(6, "hall"),
    ExistsRequest(7, "hall"),
    Rejoin([("hall", "c1", {"role": "admin"})]),
    Rejoin([]),
    Deliver("hall", ["c2"], None, FRAME, 0, "o", 17, "k3x9a0qe"),
    HistorySync(
        "hall", "k3x9a0qe", 18, [(17, 3, "o", ["c2"], 1.5), (18, len(FRAME), "", [], 0.0)],
        b"abc" + FRAME,
    ),
    HistorySync("hall", "k3x9a0qe", 18, [], b""),  # every entry expired: the offset stays
    RecoverRequest(3, "hall", "c1", "k3x9a0qe:12", {"user_id": "u"}),
    RecoverRequest(4, "hall", "c1", None, {}),
    RecoverReply(3, "covered", "k3x9a0qe:14", [13, 14], [3, len(FRAME)], b"abc" + FRAME),
    RecoverReply(4, "gap", "k3x9a0qe:14", [], [], b""),
    Resume(5, "c1"),
    Positioned(0, 3),
    Handover(1, 8),
    Goodbye(1, 7),
    Ready(0, 4242),
    Alive(0),
    BootFailed(0, "ImportError: no module named app"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.KIND)
def test_a_message_survives_the_round_trip(message: LinkMessage) -> None:
    assert LinkDecoder().feed(encode(message)) == [message]


def test_every_message_kind_has_a_round_trip_sample() -> None:
    assert {m.KIND for m in SAMPLES} == set(MESSAGES)


def test_the_blob_travels_raw_after_the_header() -> None:
    data = encode(EmitTo(5, "c1", FRAME))
    assert data.endswith(FRAME)
    length, header_len = struct.unpack_from("!II", data)
    assert length == len(data) - 4
    assert orjson.loads(data[8 : 8 + header_len]) == ["emit_to", 5, "c1"]


def test_any_chunking_gives_the_same_messages_in_order() -> None:
    stream = b"".join(encode(m) for m in SAMPLES)
    for size in (1, 3, 7, 64, len(stream)):
        decoder = LinkDecoder()
        out: list[LinkMessage] = []
        for start in range(0, len(stream), size):
            out += decoder.feed(stream[start : start + size])
        assert out == SAMPLES


def frame(header: bytes, blob: bytes = b"") -> bytes:
    return struct.pack("!II", 4 + len(header) + len(blob), len(header)) + header + blob


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!I", MAX_FRAME + 1),  # too large: refused before it is buffered
        struct.pack("!I", 3) + b"abc",  # shorter than its header length word
        struct.pack("!II", 6, 9) + b"ab",  # a header longer than its frame
        frame(b"not json"),
        frame(b'["no-such-kind"]'),
        frame(b"[]"),
        frame(b'["leave", "hall"]'),  # a field missing
    ],
)
def test_bytes_that_are_not_a_frame_raise_the_codecs_error(data: bytes) -> None:
    with pytest.raises(LinkProtocolError):
        LinkDecoder().feed(data)


def test_frames_joined_in_one_blob_split_back() -> None:
    sizes, blob = join_frames([b"a", b"", FRAME])
    assert split_frames(sizes, blob) == [b"a", b"", FRAME]


@pytest.mark.parametrize(
    "message",
    [
        RecoverReply(1, "covered", "e:2", [1, 2], [3, 3], b"abcde"),  # sizes past the blob
        RecoverReply(1, "covered", "e:2", [1], [2, 3], b"abcde"),  # more sizes than offsets
        HistorySync("hall", "e", 1, [(1, 9, "", [], 0.0)], b"abc"),
    ],
    ids=["short-blob", "offsets", "history"],
)
def test_frame_sizes_that_do_not_match_their_blob_are_a_protocol_error(
    message: LinkMessage,
) -> None:
    with pytest.raises(LinkProtocolError):
        LinkDecoder().feed(encode(message))


def test_a_partial_frame_waits_for_the_rest() -> None:
    data = encode(Leave("hall", "c1"))
    decoder = LinkDecoder()
    assert decoder.feed(data[:-1]) == []
    assert decoder.feed(data[-1:]) == [Leave("hall", "c1")]
