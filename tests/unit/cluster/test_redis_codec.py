"""The Redis codec's history parts, sans-I/O: the room message's header and its position
flag (the same bytes the publishing script splices), a history stream's entries read back
as ``HistoryEntry`` values, and the run of them a recovery may use. The script itself,
against a real Redis, is in tests/integration/cluster/test_redis_history.py."""

from __future__ import annotations

import orjson
import pytest

from socketspec.cluster.redis.codec import (
    decode_message,
    encode_message,
    history_position,
    positioned_header,
    room_header,
    run_after,
    stream_entry,
)
from socketspec.cluster.redis.scripts import HISTORY_PUBLISH_SCRIPT
from socketspec.history import HistoryEntry, HistoryPolicy, Position

POLICY = HistoryPolicy(size=100, ttl=60.0, max_bytes=10_000)


def entry(offset: int, at: float = 1000.0, size: int = 10) -> HistoryEntry:
    return HistoryEntry(offset, b"x" * size, f"o{offset}", (), at)


def test_a_room_header_names_its_origin_only_when_it_has_one() -> None:
    header = room_header("0a1b2c3d", "lobby", ["c1"], "", 12.5)
    assert header == {"k": "room", "n": "0a1b2c3d", "t": 12.5, "r": "lobby", "x": ["c1"]}
    assert room_header("0a1b2c3d", "lobby", [], "s:1", 1.0)["o"] == "s:1"


def test_a_positioned_header_is_the_header_flagged_with_the_position() -> None:
    header = room_header("0a1b2c3d", 'a "room"', ["c1"], "s:1", 12.5)
    encoded = positioned_header(orjson.dumps(header), Position("k3x9a0qe", 17))
    decoded = decode_message(encode_message(orjson.loads(encoded), b"{}"))
    assert decoded is not None
    assert decoded[0] == {**header, "h": "k3x9a0qe:17"}
    assert history_position(decoded[0]) == Position("k3x9a0qe", 17)


def test_the_script_splices_the_header_as_positioned_header_does() -> None:
    # The Lua expression must stay the one positioned_header mirrors.
    assert """string.sub(ARGV[4], 1, -2) .. ',"h":"' .. pos .. '"}'""" in HISTORY_PUBLISH_SCRIPT
    assert """'{"room":' .. ARGV[2] .. ',"pos":"' .. pos .. '",' .. string.sub(ARGV[3], 2)""" in (
        HISTORY_PUBLISH_SCRIPT
    )


def test_a_plain_room_message_has_no_position() -> None:
    assert history_position(room_header("0a1b2c3d", "lobby", [], "", 1.0)) is None


@pytest.mark.parametrize("flag", [17, "no-offset", "epoch:x", ""])
def test_an_unreadable_position_flag_is_an_error(flag: object) -> None:
    with pytest.raises(ValueError):
        history_position({"k": "room", "h": flag})


def test_a_stream_entry_reads_its_fields_and_its_age_from_the_id() -> None:
    fields = {
        b"offset": b"7",
        b"frame": b'{"room":"r","pos":"e:7","event":"x"}',
        b"origin": b"n:0.1.5",
        b"exclude": b'["c1","c2"]',
    }
    # Written 2.5 s before "now" on the wall clock; at is on the monotonic clock.
    read = stream_entry(b"1700000000000-0", fields, wall_now=1_700_000_002.5, monotonic_now=50.0)
    assert read == HistoryEntry(7, fields[b"frame"], "n:0.1.5", ("c1", "c2"), 47.5)


def test_a_stream_entry_as_a_flat_list_reads_the_same() -> None:
    flat = [b"offset", b"3", b"frame", b"{}", b"origin", b"", b"exclude", b"[]"]
    read = stream_entry("1000-1", flat, wall_now=1.0, monotonic_now=9.0)
    assert read == HistoryEntry(3, b"{}", "", (), 9.0)


@pytest.mark.parametrize(
    "fields",
    [
        {b"frame": b"{}"},  # no offset
        {b"offset": b"x", b"frame": b"{}"},
        {b"offset": b"0", b"frame": b"{}"},
        {b"offset": b"2", b"frame": b"{}", b"exclude": b"not json"},
        {b"offset": b"2", b"frame": b"{}", b"exclude": b'{"a":1}'},
    ],
)
def test_a_malformed_stream_entry_is_skipped(fields: dict[bytes, bytes]) -> None:
    assert stream_entry(b"1000-0", fields, 1.0, 1.0) is None


def test_the_run_after_a_position_starts_right_after_it_in_order() -> None:
    entries = [entry(offset) for offset in (9, 7, 8, 6, 5)]
    run = run_after(entries, Position("e", 6), 100, POLICY, 1000.0)
    assert [e.offset for e in run] == [7, 8, 9]


def test_no_run_when_the_stream_no_longer_reaches_back() -> None:
    entries = [entry(offset) for offset in (8, 9)]
    assert run_after(entries, Position("e", 6), 100, POLICY, 1000.0) == []


def test_the_run_stops_at_a_hole_and_at_the_limit() -> None:
    entries = [entry(offset) for offset in (1, 2, 3, 5, 6)]
    assert [e.offset for e in run_after(entries, Position("e", 0), 100, POLICY, 1000.0)] == [
        1,
        2,
        3,
    ]
    assert [e.offset for e in run_after(entries, Position("e", 0), 2, POLICY, 1000.0)] == [1, 2]
    assert run_after(entries, Position("e", 0), 0, POLICY, 1000.0) == []


def test_entries_past_the_ttl_are_gone_as_in_the_homes_ring() -> None:
    entries = [entry(1, at=900.0), entry(2, at=950.0), entry(3, at=990.0)]
    # ttl 60 at 1000: offset 1 (100 s old) is gone, so a reader from 0 has no run.
    assert run_after(entries, Position("e", 0), 100, POLICY, 1000.0) == []
    assert [e.offset for e in run_after(entries, Position("e", 1), 100, POLICY, 1000.0)] == [2, 3]
    no_age = HistoryPolicy(size=100, ttl=0)
    assert len(run_after(entries, Position("e", 0), 100, no_age, 1000.0)) == 3


def test_the_newest_entries_within_size_and_bytes_are_kept() -> None:
    entries = [entry(offset, size=400) for offset in range(1, 11)]
    small = HistoryPolicy(size=100, ttl=0, max_bytes=1000)  # two of 400 bytes fit
    assert run_after(entries, Position("e", 7), 100, small, 1000.0) == []
    assert [e.offset for e in run_after(entries, Position("e", 8), 100, small, 1000.0)] == [9, 10]
    few = HistoryPolicy(size=3, ttl=0)
    assert [e.offset for e in run_after(entries, Position("e", 7), 100, few, 1000.0)] == [8, 9, 10]
    huge = [entry(1, size=5000)]  # the newest is kept whatever its size
    assert len(run_after(huge, Position("e", 0), 100, small, 1000.0)) == 1
