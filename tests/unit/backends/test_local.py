"""LocalIndex: this process's members, their rooms, and delivery to them."""

from __future__ import annotations

import logging

import pytest
from roommembers import Sink

from socketspec.backends.local import LocalIndex, deliver


class Raising(Sink):
    def deliver(self, frame: bytes) -> bool:
        raise RuntimeError("bad socket")


class Leaving(Sink):
    """Leaves the room while a broadcast to it is being delivered."""

    def __init__(self, conn_id: str, index: LocalIndex, room: str) -> None:
        super().__init__(conn_id)
        self.index = index
        self.room = room

    def deliver(self, frame: bytes) -> bool:
        self.index.leave(self.room, self.id)
        return super().deliver(frame)


@pytest.fixture
def index() -> LocalIndex:
    return LocalIndex()


def attach(index: LocalIndex, *sinks: Sink) -> None:
    for sink in sinks:
        index.attach(sink)


def test_attached_members_are_found_by_id(index: LocalIndex) -> None:
    a, b = Sink("a"), Sink("b")
    attach(index, a, b)
    assert "a" in index and "c" not in index
    assert index.get("a") is a and index.get("c") is None
    assert len(index) == 2
    assert index.connections() == [a.conn, b.conn]


def test_join_and_leave_track_rooms_by_member_and_members_by_room(index: LocalIndex) -> None:
    a, b = Sink("a"), Sink("b")
    attach(index, a, b)
    index.join("r", "b")
    index.join("r", "a")
    index.join("s", "a")
    assert index.room_connections("r") == [b.conn, a.conn]  # join order
    assert set(index.rooms_of("a")) == {"r", "s"}
    assert index.has_room("s")
    assert index.leave("s", "a") is True
    assert index.leave("s", "a") is False
    assert index.leave("r", "nobody") is False
    assert not index.has_room("s")  # its last local member left
    assert set(index.rooms_of("a")) == {"r"}
    assert [(room, list(members)) for room, members in index.rooms()] == [("r", ["b", "a"])]


def test_detach_returns_the_rooms_left_oldest_first_and_forgets_them(index: LocalIndex) -> None:
    a, b = Sink("a"), Sink("b")
    attach(index, a, b)
    for room in ("x", "y", "z"):
        index.join(room, "b")
    index.join("z", "a")
    index.join("x", "a")
    assert index.detach("a") == ["x", "z"]
    assert "a" not in index and set(index.rooms_of("a")) == set()
    assert index.room_connections("x") == [b.conn]
    assert index.detach("a") == []
    assert index.detach("b") == ["x", "y", "z"]
    assert list(index.rooms()) == []


def test_room_connections_and_counts_skip_members_not_attached(index: LocalIndex) -> None:
    a = Sink("a")
    attach(index, a)
    index.join("r", "a")
    index.join("r", "elsewhere")  # recorded without being served here
    assert index.room_connections("r") == [a.conn]
    assert index.count("r", frozenset()) == 1
    assert index.count("r", frozenset({"a"})) == 0
    assert index.count("none", frozenset()) == 0
    assert index.room_connections("none") == []


def test_deliver_room_reaches_members_in_join_order_less_the_excluded(index: LocalIndex) -> None:
    a, b, c, outside = Sink("a"), Sink("b"), Sink("c", accept=False), Sink("o")
    attach(index, a, b, c, outside)
    for conn_id in ("c", "b", "a"):
        index.join("r", conn_id)
    assert index.deliver_room("r", b"m", frozenset({"b"})) == 1  # c is gone, b excluded
    assert (a.frames, b.frames, c.frames, outside.frames) == ([b"m"], [], [b"m"], [])
    assert index.deliver_room("nobody-here", b"m", frozenset()) == 0


def test_a_member_leaving_during_a_broadcast_does_not_stop_it(index: LocalIndex) -> None:
    leaving, after = Leaving("a", index, "r"), Sink("b")
    attach(index, leaving, after)
    index.join("r", "a")
    index.join("r", "b")
    assert index.deliver_room("r", b"m", ()) == 2
    assert after.frames == [b"m"] and set(index.rooms_of("a")) == set()


def test_deliver_all_filters_by_exclusion_and_namespace(index: LocalIndex) -> None:
    a, b, chat = Sink("a"), Sink("b"), Sink("c", namespace="/chat")
    attach(index, a, b, chat)
    assert index.deliver_all(b"1", frozenset({"b"})) == 2
    assert index.deliver_all(b"2", frozenset(), "/chat") == 1
    assert (a.frames, b.frames, chat.frames) == ([b"1"], [], [b"1", b"2"])


def test_a_raising_member_is_logged_and_skipped(
    index: LocalIndex, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = Raising("bad"), Sink("good")
    attach(index, bad, good)
    index.join("r", "bad")
    index.join("r", "good")
    with caplog.at_level(logging.ERROR, logger="socketspec.rooms"):
        assert index.deliver_room("r", b"m", ()) == 1
        assert index.deliver_all(b"m", ()) == 1
        assert deliver(bad, b"m") is False
    assert good.frames == [b"m", b"m"]
    assert len([r for r in caplog.records if "bad" in r.getMessage()]) == 3
