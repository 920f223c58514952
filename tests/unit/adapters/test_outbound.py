"""The ASGI connection's bounded outbound queue."""

from __future__ import annotations

import pytest

from socketspec.adapters.outbound import OutboundQueue


def test_messages_leave_in_order_with_their_sizes() -> None:
    queue = OutboundQueue(100)
    assert queue.push("a", 10) and queue.push("b", 20)
    assert (len(queue), queue.pending_bytes) == (2, 30)
    assert queue.pop() == ("a", 10)
    assert queue.pop() == ("b", 20)
    assert queue.pop() is None
    assert queue.pending_bytes == 0


def test_the_bound_counts_waiting_bytes_only() -> None:
    queue = OutboundQueue(30)
    assert queue.push("a", 20)
    assert queue.pop() == ("a", 20)
    assert queue.push("b", 30)  # exactly at the bound
    assert not queue.overflowed


def test_passing_the_bound_discards_the_backlog_and_refuses_after() -> None:
    queue = OutboundQueue(30)
    assert queue.push("a", 20)
    assert not queue.push("b", 11)
    assert queue.overflowed
    assert (len(queue), queue.pending_bytes) == (0, 0)
    assert queue.pop() is None
    assert not queue.push("c", 1)  # a connection past its bound is closing: nothing more


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        OutboundQueue(0)
