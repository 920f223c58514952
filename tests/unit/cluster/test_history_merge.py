"""A new home's history rebuilt from the copies (``RoomHistory.merge``): the longest unbroken
run ending at the newest offset any copy saw, in the copies' epoch, and never an offset
given twice."""

from __future__ import annotations

from socketspec.history import Coverage, HistoryEntry, HistoryPolicy, Position, RoomHistory

POLICY = HistoryPolicy(size=10, ttl=0)


def entry(offset: int) -> HistoryEntry:
    return HistoryEntry(offset, b'{"n":%d}' % offset, f"o{offset}", (), 0.0)


def fresh() -> RoomHistory:
    return RoomHistory("hall", POLICY, epoch="newhome0")


def test_a_fresh_home_takes_the_copys_epoch_and_entries() -> None:
    history = fresh()
    history.merge("deadhome", [entry(3), entry(4), entry(5)], 5)
    assert history.position == Position("deadhome", 5)
    assert [e.offset for e in history] == [3, 4, 5]
    assert history.offset_of("o4") == 4  # a resent broadcast is still recognised


def test_copies_missing_different_messages_make_one_run() -> None:
    history = fresh()
    history.merge("deadhome", [entry(1), entry(2), entry(3)], 3)
    history.merge("deadhome", [entry(3), entry(4)], 4)
    assert [e.offset for e in history] == [1, 2, 3, 4]


def test_a_hole_keeps_only_the_run_ending_at_the_newest() -> None:
    history = fresh()
    history.merge("deadhome", [entry(1), entry(2)], 2)
    history.merge("deadhome", [entry(4), entry(5)], 5)
    assert [e.offset for e in history] == [4, 5]
    assert history.since(Position("deadhome", 1)).coverage is Coverage.GAP
    assert history.since(Position("deadhome", 3)).coverage is Coverage.COVERED


def test_an_expired_copy_still_carries_its_offset() -> None:
    history = fresh()
    history.merge("deadhome", [], 9)  # every entry of it expired
    assert history.position == Position("deadhome", 9)
    assert len(history) == 0
    # A client that missed nothing recovers; the next message is 10, not 1.
    assert history.since(Position("deadhome", 9)).coverage is Coverage.COVERED
    assert history.append(b'{"n":10}').offset == 10


def test_a_copy_that_knows_nothing_changes_nothing() -> None:
    history = fresh()
    history.merge("deadhome", [], 0)
    assert history.position == Position("newhome0", 0)


def test_entries_older_than_a_newer_offset_seen_are_not_kept() -> None:
    history = fresh()
    history.merge("deadhome", [entry(1), entry(2)], 2)
    history.merge("deadhome", [], 4)  # another copy saw 3 and 4, both expired there
    assert history.position == Position("deadhome", 4)
    assert len(history) == 0
    assert history.since(Position("deadhome", 1)).coverage is Coverage.GAP


def test_an_older_epoch_with_less_is_ignored() -> None:
    history = fresh()
    history.merge("deadhome", [entry(7)], 7)
    history.merge("olderone", [entry(1), entry(2)], 2)
    assert history.position == Position("deadhome", 7)
