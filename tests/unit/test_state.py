"""The connection state machine and its transition metric."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from socketspec.errors import IllegalTransitionError
from socketspec.state import TRANSITIONS, ConnectionStateMachine, ConnState

METRIC = "socketspec_connection_transitions_total"

LEGAL = sorted(
    ((src, dst) for src, targets in TRANSITIONS.items() for dst in targets),
    key=lambda pair: (pair[0].value, pair[1].value),
)
ILLEGAL = sorted(
    ((src, dst) for src in ConnState for dst in ConnState if dst not in TRANSITIONS[src]),
    key=lambda pair: (pair[0].value, pair[1].value),
)

# The path from CONNECTING that reaches each state.
PATH_TO = {
    ConnState.CONNECTING: [],
    ConnState.OPEN: [ConnState.OPEN],
    ConnState.DRAINING: [ConnState.OPEN, ConnState.DRAINING],
    ConnState.REJECTED: [ConnState.REJECTED],
    ConnState.CLOSING: [ConnState.OPEN, ConnState.CLOSING],
    ConnState.CLOSED: [ConnState.OPEN, ConnState.CLOSING, ConnState.CLOSED],
}


def machine_in(state: ConnState) -> ConnectionStateMachine:
    machine = ConnectionStateMachine()
    for step in PATH_TO[state]:
        machine.move(step)
    assert machine.state is state
    return machine


def transitions_seen(src: ConnState, dst: ConnState) -> float:
    value = REGISTRY.get_sample_value(METRIC, {"from_state": src.value, "to_state": dst.value})
    return value or 0.0


def test_table_is_the_expected_lifecycle() -> None:
    assert {src: set(dsts) for src, dsts in TRANSITIONS.items()} == {
        ConnState.CONNECTING: {ConnState.OPEN, ConnState.REJECTED},
        ConnState.REJECTED: set(),
        ConnState.OPEN: {ConnState.DRAINING, ConnState.CLOSING},
        ConnState.DRAINING: {ConnState.CLOSING},
        ConnState.CLOSING: {ConnState.CLOSED},
        ConnState.CLOSED: set(),
    }


def test_starts_in_handshake() -> None:
    machine = ConnectionStateMachine()
    assert machine.state is ConnState.CONNECTING
    assert not machine.accepts_events
    assert not machine.is_closed


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=lambda s: s.value)
def test_every_legal_transition(src: ConnState, dst: ConnState) -> None:
    machine = machine_in(src)
    assert machine.can_move(dst)
    machine.move(dst)
    assert machine.state is dst


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transition_raises_and_names_both_states(src: ConnState, dst: ConnState) -> None:
    machine = machine_in(src)
    assert not machine.can_move(dst)
    with pytest.raises(IllegalTransitionError) as info:
        machine.move(dst)
    text = str(info.value)
    assert src.value in text
    assert dst.value in text
    assert machine.state is src  # a refused move changes nothing


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=lambda s: s.value)
def test_each_move_counts_once(src: ConnState, dst: ConnState) -> None:
    machine = machine_in(src)
    before = transitions_seen(src, dst)
    machine.move(dst)
    assert transitions_seen(src, dst) == before + 1


def test_illegal_move_is_not_counted() -> None:
    machine = ConnectionStateMachine()
    before = transitions_seen(ConnState.CONNECTING, ConnState.CLOSED)
    with pytest.raises(IllegalTransitionError):
        machine.move(ConnState.CLOSED)
    assert transitions_seen(ConnState.CONNECTING, ConnState.CLOSED) == before


def test_full_lifecycle_counts_each_step() -> None:
    steps = [
        (ConnState.CONNECTING, ConnState.OPEN),
        (ConnState.OPEN, ConnState.DRAINING),
        (ConnState.DRAINING, ConnState.CLOSING),
        (ConnState.CLOSING, ConnState.CLOSED),
    ]
    before = {step: transitions_seen(*step) for step in steps}
    machine = ConnectionStateMachine()
    for _, dst in steps:
        machine.move(dst)
    for step in steps:
        assert transitions_seen(*step) == before[step] + 1


def test_flags_follow_state() -> None:
    machine = ConnectionStateMachine()
    machine.move(ConnState.OPEN)
    assert machine.accepts_events and not machine.is_closed
    machine.move(ConnState.DRAINING)
    assert not machine.accepts_events and not machine.is_closed
    machine.move(ConnState.CLOSING)
    assert machine.is_closed
    machine.move(ConnState.CLOSED)
    assert machine.is_closed and not machine.accepts_events


def connections_in(state: ConnState) -> float:
    return REGISTRY.get_sample_value("socketspec_connections", {"state": state.value}) or 0.0


def test_state_gauge_follows_the_machine() -> None:
    before = {state: connections_in(state) for state in ConnState}
    machine = ConnectionStateMachine()
    assert connections_in(ConnState.CONNECTING) == before[ConnState.CONNECTING] + 1
    machine.move(ConnState.OPEN)
    assert connections_in(ConnState.CONNECTING) == before[ConnState.CONNECTING]
    assert connections_in(ConnState.OPEN) == before[ConnState.OPEN] + 1
    machine.move(ConnState.CLOSING)
    machine.move(ConnState.CLOSED)
    # a closed connection is counted nowhere
    assert {state: connections_in(state) for state in ConnState} == before
