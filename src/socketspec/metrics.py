"""Prometheus metric objects.

Owns the metric definitions (names, types, labels). Recording happens where the
state changes (the state machine, the pipeline, the room store); this module
only declares what can be recorded. Event labels take registered event names
only, so cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "socketspec_"

connection_transitions = Counter(
    PREFIX + "connection_transitions_total",
    "Connection state machine transitions.",
    ["from_state", "to_state"],
)
connections_by_state = Gauge(
    PREFIX + "connections",
    "Connections currently in each state.",
    ["state"],
)
events_received = Counter(
    PREFIX + "events_received_total",
    "Inbound events accepted by the pipeline, by registered event name.",
    ["event"],
)
events_handled = Counter(
    PREFIX + "events_handled_total",
    "Events whose handler completed, by event name and outcome.",
    ["event", "outcome"],
)
handler_duration = Histogram(
    PREFIX + "handler_duration_seconds",
    "Handler run time, dependencies included.",
    ["event"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
)
errors = Counter(
    PREFIX + "errors_total",
    "Error envelopes sent, by error code.",
    ["code"],
)
room_joins = Counter(PREFIX + "room_joins_total", "Successful room joins.")
room_leaves = Counter(PREFIX + "room_leaves_total", "Room leaves, disconnects included.")
rooms = Gauge(PREFIX + "rooms", "Rooms that currently exist on this process.")
broadcast_fanout = Histogram(
    PREFIX + "broadcast_fanout",
    "Local deliveries per broadcast.",
    buckets=(0, 1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)

UNKNOWN_EVENT_LABEL = "__unknown__"
