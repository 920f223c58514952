"""RoomHome: one record of a room's members in join order, the max_members check made with
the change, and a room's life (first join, last leave, static, ttl), on an injected clock."""

from __future__ import annotations

from socketspec import metrics
from socketspec.backends.base import JoinResult
from socketspec.backends.home import RoomHome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rooms_gauge() -> float:
    return float(metrics.rooms._value.get())


def test_members_keep_join_order_and_their_values() -> None:
    home: RoomHome[int] = RoomHome()
    assert home.join("hall", "c2", 2, 0) is JoinResult.JOINED
    assert home.join("hall", "c1", 1, 0) is JoinResult.JOINED
    assert home.join("hall", "c2", 9, 0) is JoinResult.ALREADY_MEMBER
    assert home.members("hall") == {"c2": 2, "c1": 1}
    assert list(home.members("hall")) == ["c2", "c1"]
    assert home.members("nowhere") == {}


def test_max_members_is_checked_with_the_join() -> None:
    home: RoomHome[None] = RoomHome()
    assert home.join("duo", "a", None, 2) is JoinResult.JOINED
    assert home.join("duo", "b", None, 2) is JoinResult.JOINED
    assert home.join("duo", "c", None, 2) is JoinResult.FULL
    assert "c" not in home.members("duo")
    home.record("duo", "c", None)  # admitted elsewhere: recorded past the limit
    assert len(home.members("duo")) == 3


def test_the_last_leave_destroys_the_room_and_sets_the_gauge() -> None:
    home: RoomHome[None] = RoomHome()
    home.join("hall", "a", None, 0)
    home.join("hall", "b", None, 0)
    assert len(home) == 1
    assert rooms_gauge() == 1
    assert home.leave("hall", "a") == (True, False)
    assert home.leave("hall", "a") == (False, False)  # not a member any more
    assert home.leave("hall", "b") == (True, True)
    assert "hall" not in home
    assert not home.exists("hall")
    assert rooms_gauge() == 0
    assert home.leave("hall", "b") == (False, False)  # no room at all


def test_a_member_valued_none_is_still_a_member() -> None:
    home: RoomHome[None] = RoomHome()
    home.join("hall", "a", None, 0)
    assert home.leave("hall", "a") == (True, True)


def test_a_static_room_outlives_its_members() -> None:
    home: RoomHome[None] = RoomHome()
    home.declare("lobby", static=True, ttl=0)
    assert home.exists("lobby")
    home.join("lobby", "a", None, 0)
    assert home.leave("lobby", "a") == (True, True)  # empty, but not destroyed
    assert home.exists("lobby")
    assert list(home) == ["lobby"]


def test_a_room_with_a_ttl_exists_until_it_runs_out_unless_rejoined() -> None:
    clock = Clock()
    home: RoomHome[None] = RoomHome(clock)
    home.declare("match", static=False, ttl=30)
    home.join("match", "a", None, 0)
    home.leave("match", "a")
    clock.now += 29
    assert home.exists("match")
    clock.now += 2
    assert not home.exists("match")
    home.join("match", "b", None, 0)
    home.leave("match", "b")
    clock.now += 10
    home.record("match", "c", None)  # rejoined: the countdown is gone
    home.leave("match", "c")
    clock.now += 29
    assert home.exists("match")


def test_leave_where_drops_one_instances_members_everywhere() -> None:
    home: RoomHome[tuple[int, int]] = RoomHome()
    home.join("a", "x", (1, 1), 0)
    home.join("a", "y", (2, 1), 0)
    home.join("b", "z", (1, 1), 0)
    home.join("c", "w", (1, 2), 0)  # shard 1's successor: stays
    gone = home.leave_where(lambda instance: instance == (1, 1))
    assert gone == [("a", ["x"], False), ("b", ["z"], True)]
    assert home.members("a") == {"y": (2, 1)}
    assert "b" not in home
    assert home.members("c") == {"w": (1, 2)}
