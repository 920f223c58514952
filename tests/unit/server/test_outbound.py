"""The connection's outbound queue, sans-I/O: what waits while the transport has paused."""

from __future__ import annotations

from socketspec.server.outbound import (
    TRANSPORT_HIGH_WATER,
    Dropped,
    OutboundQueue,
    water_marks,
)


def test_the_transports_share_is_a_quarter_of_max_outbound_at_most_and_capped() -> None:
    assert water_marks(64 * 1024) == (16 * 1024, 4 * 1024)
    assert water_marks(1024 * 1024) == (TRANSPORT_HIGH_WATER, TRANSPORT_HIGH_WATER // 4)
    assert water_marks(1) == (1, 0)


def test_an_idle_queue_lets_frames_go_straight_to_the_transport() -> None:
    queue = OutboundQueue(chunk=100)
    assert queue.idle and len(queue) == 0
    queue.pause()
    assert not queue.idle
    queue.resume()
    assert queue.idle
    queue.push([b"a"])
    assert not queue.idle  # frames wait: new ones must go behind them


def test_nothing_is_taken_while_paused_and_everything_comes_out_in_order() -> None:
    queue = OutboundQueue(chunk=10)
    queue.pause()
    queue.push([b"1234", b"5678"])
    queue.push([b"90"])
    assert queue.queued_bytes == 10
    assert queue.take() == []
    queue.resume()
    taken: list[bytes] = []
    while frames := queue.take():
        taken.extend(frames)
    assert taken == [b"1234", b"5678", b"90"]
    assert queue.queued_bytes == 0 and queue.idle


def test_take_hands_over_at_most_a_chunk_but_always_one_frame() -> None:
    queue = OutboundQueue(chunk=8)
    queue.push([b"aaaa", b"bbbb", b"cccc", b"d" * 20, b"e"])
    assert queue.take() == [b"aaaa", b"bbbb"]
    assert queue.take() == [b"cccc"]  # the next one would pass the chunk
    assert queue.take() == [b"d" * 20]  # larger than a chunk: alone
    assert queue.take() == [b"e"]
    assert queue.take() == []


def test_over_counts_only_what_waits_here() -> None:
    queue = OutboundQueue(chunk=4)
    queue.push([b"x" * 6])
    assert not queue.over(6)
    queue.push([b"y"])
    assert queue.over(6)
    queue.take()
    assert not queue.over(6)


def test_drop_throws_away_every_waiting_frame_and_says_how_much() -> None:
    queue = OutboundQueue(chunk=4)
    queue.pause()
    queue.push([b"abc", b"de"])
    assert queue.drop() == Dropped(frames=2, size=5)
    assert len(queue) == 0 and queue.queued_bytes == 0
    assert queue.paused  # the transport is still paused: dropping does not change that
    assert queue.drop() == Dropped(frames=0, size=0)


def test_the_queue_holds_the_very_frames_it_is_given() -> None:
    """A broadcast is framed once per shard: every member's queue holds that one bytes
    object, never a copy."""
    frame = b"\x81\x05hello"
    first, second = OutboundQueue(chunk=64), OutboundQueue(chunk=64)
    first.pause()
    second.pause()
    first.push([frame])
    second.push([frame])
    first.resume()
    second.resume()
    assert first.take()[0] is frame
    assert second.take()[0] is frame
