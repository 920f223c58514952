"""The shard state table: every legal move, every illegal one raising with the state's name,
the metric recorded at the move; and the liveness bookkeeping."""

from __future__ import annotations

import itertools

import pytest

from socketspec import metrics
from socketspec.cluster.lifecycle import (
    LIVE,
    TRANSITIONS,
    IllegalTransition,
    Liveness,
    ShardEvent,
    ShardState,
    next_state,
)

S, E = ShardState, ShardEvent


def counter(metric: object) -> float:
    return float(metric._value.get())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [
        (S.BOOTING, E.READY, S.SERVING),
        (S.BOOTING, E.EXITED, S.EXITED),
        (S.BOOTING, E.BOOT_TIMEOUT, S.KILLED),
        (S.BOOTING, E.RETIRE, S.RETIRING),
        (S.SERVING, E.SILENT, S.HUNG),
        (S.SERVING, E.RETIRE, S.RETIRING),
        (S.SERVING, E.EXITED, S.EXITED),
        (S.RETIRING, E.OVERDUE, S.KILLED),
        (S.RETIRING, E.EXITED, S.EXITED),
        (S.KILLED, E.EXITED, S.EXITED),
        (S.HUNG, E.RESUMED, S.RETIRING),
        (S.HUNG, E.OVERDUE, S.KILLED),
        (S.HUNG, E.EXITED, S.EXITED),
    ],
)
def test_legal_moves(state: ShardState, event: ShardEvent, target: ShardState) -> None:
    assert next_state(state, event) is target


def test_the_table_holds_exactly_the_legal_moves() -> None:
    assert len(TRANSITIONS) == 13


@pytest.mark.parametrize(
    ("state", "event"),
    [pair for pair in itertools.product(S, E) if pair not in TRANSITIONS],
)
def test_illegal_moves_raise_naming_the_state(state: ShardState, event: ShardEvent) -> None:
    with pytest.raises(IllegalTransition, match=state.name) as caught:
        next_state(state, event)
    assert caught.value.state is state and caught.value.event is event


def test_every_state_but_exited_can_end_and_exited_is_terminal() -> None:
    for state in S:
        ends = (state, E.EXITED) in TRANSITIONS
        assert ends is (state is not S.EXITED), state
    assert not [pair for pair in TRANSITIONS if pair[0] is S.EXITED]
    assert {S.BOOTING, S.SERVING} == LIVE  # a hung shard is being replaced: not live


def test_a_silent_shard_is_killed_only_through_its_grace() -> None:
    # SERVING cannot go straight to KILLED: TERM, then grace, then KILL.
    assert (S.SERVING, E.OVERDUE) not in TRANSITIONS
    assert next_state(next_state(S.SERVING, E.SILENT), E.OVERDUE) is S.KILLED


def test_a_silent_shard_counts_a_timeout_and_a_failed_boot_counts_a_boot_failure() -> None:
    timeouts, boot_failures = counter(metrics.shard_timeouts), counter(metrics.shard_boot_failures)
    next_state(S.SERVING, E.SILENT)
    assert counter(metrics.shard_timeouts) == timeouts + 1
    next_state(S.BOOTING, E.EXITED)
    next_state(S.BOOTING, E.BOOT_TIMEOUT)
    assert counter(metrics.shard_boot_failures) == boot_failures + 2
    # Exits of serving, retiring, hung and killed shards count neither, nor does the end of
    # a hung shard (the silence counted once).
    next_state(S.HUNG, E.OVERDUE)
    next_state(S.HUNG, E.RESUMED)
    for state in (S.SERVING, S.RETIRING, S.HUNG, S.KILLED):
        next_state(state, E.EXITED)
    assert counter(metrics.shard_timeouts) == timeouts + 1
    assert counter(metrics.shard_boot_failures) == boot_failures + 2


def test_liveness_reports_shards_silent_past_the_timeout() -> None:
    liveness = Liveness(2.0)
    assert list(liveness.silent(100.0)) == [] and liveness.next_deadline() is None
    liveness.heard(11, 100.0)
    liveness.heard(12, 100.5)
    assert liveness.next_deadline() == 102.0
    assert list(liveness.silent(102.0)) == []  # exactly the timeout is not past it
    assert list(liveness.silent(102.25)) == [(11, 2.25)]
    liveness.heard(11, 102.3)  # a report resets the clock
    assert list(liveness.silent(102.75)) == [(12, 2.25)]
    assert liveness.next_deadline() == 102.5


def test_a_forgotten_shard_is_no_longer_watched() -> None:
    liveness = Liveness(1.0)
    liveness.heard(7, 0.0)
    assert 7 in liveness
    liveness.forget(7)
    liveness.forget(7)  # idempotent
    assert 7 not in liveness
    assert list(liveness.silent(50.0)) == []


def test_the_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Liveness(0)
