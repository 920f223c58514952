"""The connection state machine: one enum, one transition table.

Owns which connection states exist and which moves between them are legal.
Every transition goes through ``ConnectionStateMachine.move``, which is where
the transition metric is recorded; an illegal move raises
``IllegalTransitionError`` naming both states. Does not own what happens on a
transition (the connection runtime does that).
"""

from __future__ import annotations

from enum import StrEnum

from socketspec import metrics
from socketspec.errors import IllegalTransitionError


class ConnState(StrEnum):
    CONNECTING = "connecting"  # upgrade accepted by the transport, not yet authenticated
    REJECTED = "rejected"  # terminal: refused during connect (authentication)
    OPEN = "open"  # authenticated, events flow
    DRAINING = "draining"  # server shutting down: no new events, running ones finish
    CLOSING = "closing"  # close started, cleanup (rooms, hooks) in progress
    CLOSED = "closed"  # terminal


TRANSITIONS: dict[ConnState, frozenset[ConnState]] = {
    ConnState.CONNECTING: frozenset({ConnState.OPEN, ConnState.REJECTED}),
    ConnState.REJECTED: frozenset(),
    ConnState.OPEN: frozenset({ConnState.DRAINING, ConnState.CLOSING}),
    ConnState.DRAINING: frozenset({ConnState.CLOSING}),
    ConnState.CLOSING: frozenset({ConnState.CLOSED}),
    ConnState.CLOSED: frozenset(),
}

# Label children are bound once: a transition costs one dict lookup and an increment.
_TRANSITION_COUNTERS = {
    (src, dst): metrics.connection_transitions.labels(from_state=src.value, to_state=dst.value)
    for src, dsts in TRANSITIONS.items()
    for dst in dsts
}
_STATE_GAUGES = {
    state: metrics.connections_by_state.labels(state=state.value) for state in ConnState
}


class ConnectionStateMachine:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = ConnState.CONNECTING
        _STATE_GAUGES[ConnState.CONNECTING].inc()

    def can_move(self, target: ConnState) -> bool:
        return target in TRANSITIONS[self.state]

    def move(self, target: ConnState) -> None:
        source = self.state
        counter = _TRANSITION_COUNTERS.get((source, target))
        if counter is None:
            raise IllegalTransitionError(
                f"connection cannot move from state {source.value!r} to {target.value!r}"
            )
        self.state = target
        counter.inc()
        _STATE_GAUGES[source].dec()
        if TRANSITIONS[target]:  # terminal states are not counted as current connections
            _STATE_GAUGES[target].inc()

    @property
    def accepts_events(self) -> bool:
        return self.state is ConnState.OPEN

    @property
    def is_closed(self) -> bool:
        return self.state in (ConnState.CLOSING, ConnState.CLOSED, ConnState.REJECTED)
