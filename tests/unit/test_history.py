"""Room history (socketspec.history): positions, the positioned envelope, one room's bounded
ring and what ``since`` answers, a copy's ``record`` and a rebuilt home's ``merge``."""

from __future__ import annotations

import orjson
import pytest

from socketspec.history import (
    EPOCH_LENGTH,
    Coverage,
    HistoryBook,
    HistoryPolicy,
    Position,
    RoomHistory,
    new_epoch,
    room_json,
    with_position,
)


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def frame(n: int) -> bytes:
    return orjson.dumps({"event": "e", "payload": {"n": n}})


def ns(entries: object) -> list[int]:
    return [orjson.loads(e.frame)["payload"]["n"] for e in entries]  # type: ignore[attr-defined]


def test_positions_print_and_parse() -> None:
    assert str(Position("abc", 7)) == "abc:7"
    assert Position.parse("abc:7") == Position("abc", 7)
    assert Position.parse("a:b:3") == Position("a:b", 3)
    for bad in ("", "abc", ":3", "abc:", "abc:-1", "abc:x", "e" * 65 + ":1"):
        with pytest.raises(ValueError):
            Position.parse(bad)


def test_epochs_are_short_and_distinct() -> None:
    epochs = {new_epoch() for _ in range(50)}
    assert len(epochs) == 50 and all(len(e) == EPOCH_LENGTH for e in epochs)


def test_the_position_is_spliced_in_front_of_the_envelope() -> None:
    out = with_position(frame(1), room_json('lo"bby'), Position("ep", 3))
    assert orjson.loads(out) == {"room": 'lo"bby', "pos": "ep:3", "event": "e", "payload": {"n": 1}}
    assert out.startswith(b'{"room":"lo\\"bby","pos":"ep:3",')


def test_policies_are_checked() -> None:
    assert not HistoryPolicy(0).enabled
    with pytest.raises(ValueError):
        HistoryPolicy(-1)
    with pytest.raises(ValueError):
        HistoryPolicy(1, max_bytes=0)


def test_since_answers_the_entries_after_a_position_or_a_gap() -> None:
    history = RoomHistory("r", HistoryPolicy(3), epoch="ep")
    assert history.since(None).coverage is Coverage.COVERED  # nothing ever sent
    start = history.position
    for n in range(1, 6):
        history.append(frame(n))
    assert ns(history) == [3, 4, 5]
    assert history.since(start).coverage is Coverage.GAP
    assert history.since(None).coverage is Coverage.GAP
    covered = history.since(Position("ep", 3))
    assert covered.coverage is Coverage.COVERED and ns(covered.entries) == [4, 5]
    assert history.since(Position("ep", 2)).coverage is Coverage.COVERED
    assert ns(history.since(Position("ep", 2)).entries) == [3, 4, 5]
    assert history.since(Position("ep", 5)).entries == ()
    assert history.since(Position("ep", 6)).coverage is Coverage.GAP  # from the future
    assert history.since(Position("other", 4)).coverage is Coverage.GAP


def test_bytes_and_age_bound_the_ring() -> None:
    clock = Clock()
    size = len(with_position(frame(1), room_json("r"), Position("ep", 1)))
    history = RoomHistory("r", HistoryPolicy(10, ttl=5, max_bytes=2 * size), "ep", clock=clock)
    for n in range(1, 4):
        history.append(frame(n))
    assert ns(history) == [2, 3] and history.bytes == 2 * size
    clock.now += 6
    history.append(frame(4))
    assert ns(history.since(Position("ep", 3)).entries) == [4]
    assert history.since(Position("ep", 2)).coverage is Coverage.GAP


def test_excluded_members_are_not_replayed_and_origins_are_recognised() -> None:
    history = RoomHistory("r", HistoryPolicy(5), epoch="ep")
    history.append(frame(1), origin="o1", exclude=["a"])
    history.append(frame(2), origin="o2")
    replay = history.since(Position("ep", 0))
    assert len(replay.frames_for("a")) == 1 and len(replay.frames_for("b")) == 2
    assert history.offset_of("o1") == 1 and history.offset_of("") is None


def test_a_copy_records_a_run_and_restarts_at_a_hole() -> None:
    home = RoomHistory("r", HistoryPolicy(5), epoch="ep")
    entries = [home.append(frame(n)) for n in range(1, 5)]
    copy = RoomHistory("r", HistoryPolicy(5), epoch="ep")
    assert copy.record(entries[0]) and copy.record(entries[1])
    assert not copy.record(entries[1])
    assert copy.record(entries[3])  # a hole: the run restarts at 4
    assert ns(copy) == [4]


def test_merge_keeps_the_longest_run_ending_at_the_newest() -> None:
    home = RoomHistory("r", HistoryPolicy(10), epoch="ep")
    entries = [home.append(frame(n)) for n in range(1, 7)]
    rebuilt = RoomHistory("r", HistoryPolicy(10))
    rebuilt.merge("ep", entries[:3])
    rebuilt.merge("ep", entries[2:6])
    assert rebuilt.epoch == "ep" and ns(rebuilt) == [1, 2, 3, 4, 5, 6]
    assert rebuilt.position == Position("ep", 6)
    older = RoomHistory("r", HistoryPolicy(10), epoch="old")
    older.append(frame(0))
    rebuilt.merge("old", list(older))  # an older epoch with less: ignored
    assert rebuilt.epoch == "ep"


def test_the_book_opens_histories_for_rooms_with_a_policy() -> None:
    book = HistoryBook(lambda room: HistoryPolicy(2) if room == "h" else None)
    assert book.open("plain") is None and not book.has_history("plain")
    history = book.open("h", epoch="ep")
    assert history is not None and book.open("h") is history and "h" in book
    history.append(frame(1))
    assert book.totals == (1, history.bytes)
    book.discard("h")
    assert book.get("h") is None
