"""Prometheus metric objects, and the per-process tally that keeps the hot path cheap.

Owns the metric definitions (names, types, labels; see docs/metrics.md) and
``TALLY``: counts and observations made on the per-message path are added to
plain Python numbers and folded into the Prometheus values by ``TALLY.flush()``
(each shard flushes once a second). A Prometheus value in multiprocess mode
costs a lock, a pid check and a write to a memory-mapped file per update; the
tally costs a dictionary update. Rare events (connection transitions, closes,
supervisor events) are recorded directly. Recording happens where the state
changes; this module only declares what can be recorded.

Cardinality is bounded: event labels take registered event names only
(``__unknown__`` otherwise); no connection id, user id or room name is a label.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "socketspec_"
UNKNOWN_EVENT_LABEL = "__unknown__"

LATENCY_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

# -- connections --------------------------------------------------------------------------------
connection_transitions = Counter(
    PREFIX + "connection_transitions_total",
    "Connection state machine transitions.",
    ["from_state", "to_state"],
)
connections_by_state = Gauge(
    PREFIX + "connections",
    "Connections currently in each state.",
    ["state"],
    multiprocess_mode="livesum",
)
connection_closes = Counter(
    PREFIX + "connection_closes_total",
    "Closes the server started, by close code.",
    ["code"],
)
# -- connection-state recovery (docs/recovery.md) ------------------------------------------------
RECOVERY_OUTCOMES = ("recovered", "gap", "invalid", "expired", "foreign")
recoveries = Counter(
    PREFIX + "recoveries_total",
    "Recovery attempts by outcome: recovered (every history room covered), gap (the session "
    "came back, some rooms' history no longer covered the gap), or the token refused "
    "(invalid, expired, foreign). Attempts are the sum.",
    ["outcome"],
)
for _outcome in RECOVERY_OUTCOMES:  # every outcome's series exists (at 0) from the start
    recoveries.labels(outcome=_outcome)
recovery_replayed_messages = Counter(
    PREFIX + "recovery_replayed_messages_total",
    "Room messages replayed to recovering connections.",
)
recovery_ack_replays = Counter(
    PREFIX + "recovery_ack_replays_total",
    "Resent acked messages answered with the stored reply instead of running again.",
)
slow_consumer_closes = Counter(
    PREFIX + "slow_consumer_closes_total",
    "Connections closed with 4008: their unsent bytes passed --max-outbound.",
)
outbound_dropped_frames = Counter(
    PREFIX + "outbound_dropped_frames_total",
    "Frames a slow consumer's queue held when it was dropped for its 4008 close.",
)
outbound_dropped_bytes = Counter(
    PREFIX + "outbound_dropped_bytes_total",
    "Bytes a slow consumer's queue held when it was dropped for its 4008 close.",
)
http_responses = Counter(
    PREFIX + "http_responses_total",
    "Plain HTTP answers (health, refusals), by status.",
    ["status"],
)
connections_refused = Counter(
    PREFIX + "connections_refused_total",
    "Upgrades answered 503 (the shard holds --max-connections) or 429 (the client's address "
    "holds --max-per-ip), by reason.",
    ["reason"],
)
handshake_timeouts = Counter(
    PREFIX + "handshake_timeouts_total",
    "Connections dropped because their HTTP upgrade was not complete within "
    "--handshake-timeout.",
)

# -- events -------------------------------------------------------------------------------------
events_received = Counter(
    PREFIX + "events_received_total",
    "Inbound events admitted to the pipeline, by registered event name.",
    ["event"],
)
events_handled = Counter(
    PREFIX + "events_handled_total",
    "Handlers finished, by event name and outcome.",
    ["event", "outcome"],
)
handler_duration = Histogram(
    PREFIX + "handler_duration_seconds",
    "Handler run time, dependencies included.",
    ["event"],
    buckets=LATENCY_BUCKETS,
)
errors = Counter(PREFIX + "errors_total", "Error envelopes sent, by error code.", ["code"])

# -- frames -------------------------------------------------------------------------------------
frames_received = Counter(PREFIX + "frames_received_total", "WebSocket data messages received.")
frames_sent = Counter(PREFIX + "frames_sent_total", "WebSocket data messages sent.")
bytes_received = Counter(PREFIX + "bytes_received_total", "Payload bytes of messages received.")
bytes_sent = Counter(PREFIX + "bytes_sent_total", "Payload bytes of messages sent.")

# -- rooms --------------------------------------------------------------------------------------
rooms = Gauge(
    PREFIX + "rooms", "Rooms that exist, counted on their home.", multiprocess_mode="livesum"
)
room_joins = Counter(PREFIX + "room_joins_total", "Successful room joins.")
room_leaves = Counter(PREFIX + "room_leaves_total", "Room leaves, disconnects included.")
broadcasts = Counter(
    PREFIX + "broadcasts_total",
    "Room broadcasts: ordered by the room's home, degraded (home down), or "
    "undelivered_remote (Redis down: other nodes missed it).",
    ["path"],
)
broadcast_fanout = Histogram(
    PREFIX + "broadcast_fanout",
    "Local deliveries per broadcast per shard.",
    buckets=(0, 1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)

# -- room history (the cluster room store sets these) --------------------------------------------
room_history_messages = Gauge(
    PREFIX + "room_history_messages",
    "Room history messages kept, per shard (a room's home and every shard's copy), summed.",
    multiprocess_mode="livesum",
)
room_history_bytes = Gauge(
    PREFIX + "room_history_bytes",
    "Bytes of the room history messages kept, per shard, summed.",
    multiprocess_mode="livesum",
)

# -- mailboxes and pipes ------------------------------------------------------------------------
mailbox_depth = Gauge(
    PREFIX + "mailbox_depth",
    "Inbound messages queued in connection mailboxes.",
    multiprocess_mode="livesum",
)
mailbox_full = Counter(
    PREFIX + "mailbox_full_total", "Times a full mailbox paused reading from its socket."
)
pipe_sent = Counter(
    PREFIX + "pipe_messages_sent_total", "Inter-shard messages sent, by kind.", ["kind"]
)
pipe_received = Counter(
    PREFIX + "pipe_messages_received_total", "Inter-shard messages received, by kind.", ["kind"]
)
pipe_dropped = Counter(
    PREFIX + "pipe_dropped_total",
    "Inter-shard messages dropped (link overflow or peer down).",
)

# -- sessions -----------------------------------------------------------------------------------
heartbeat_rtt = Histogram(
    PREFIX + "heartbeat_rtt_seconds",
    "__ping__ to __pong__ round trip.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- between nodes (Redis) ----------------------------------------------------------------------
redis_published = Counter(
    PREFIX + "redis_published_total",
    "Messages published to Redis for other nodes, by kind.",
    ["kind"],
)
redis_received = Counter(
    PREFIX + "redis_received_total",
    "Messages received from other nodes through Redis, by kind.",
    ["kind"],
)
redis_errors = Counter(
    PREFIX + "redis_errors_total", "Redis operations that failed, by operation.", ["op"]
)
redis_lag = Histogram(
    PREFIX + "redis_lag_seconds",
    "From a broadcast's publish on one node to its receipt on another.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
redis_up = Gauge(
    PREFIX + "redis_up",
    "Whether a shard's connection to Redis serves (1) or is being re-established (0).",
    ["shard"],
    multiprocess_mode="livemax",
)

# -- supervisor ---------------------------------------------------------------------------------
# Set by the supervisor only; every process has the gauge (at 0), so the sum would be right
# too, but the largest live value says what is meant.
shard_restarts = Counter(
    PREFIX + "shard_restarts_total", "Shards the supervisor replaced after they died."
)
shard_timeouts = Counter(
    PREFIX + "shard_timeouts_total",
    "Shards killed because they sent no liveness report for --shard-timeout.",
)
shard_boot_failures = Counter(
    PREFIX + "shard_boot_failures_total",
    "Replacement shards that exited or timed out before they were ready.",
)
shards_up = Gauge(PREFIX + "shards_up", "Shards serving.", multiprocess_mode="livemax")
shards_configured = Gauge(
    PREFIX + "shards_configured", "Shards the cluster runs.", multiprocess_mode="livemax"
)


class _Incrementable(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Tally:
    """Per-process counts and observations, folded into Prometheus by ``flush``."""

    __slots__ = ("_counts", "_observations", "enabled")

    def __init__(self) -> None:
        self.enabled = True
        self._counts: dict[_Incrementable, float] = {}
        # histogram child -> (its upper bounds, per-bucket counts, sum)
        self._observations: dict[Any, tuple[list[float], list[int], list[float]]] = {}

    def add(self, counter: _Incrementable, amount: float = 1) -> None:
        if not self.enabled:
            return
        counts = self._counts
        counts[counter] = counts.get(counter, 0) + amount

    def observe(self, histogram: Any, value: float) -> None:
        if not self.enabled:
            return
        entry = self._observations.get(histogram)
        if entry is None:
            bounds = list(histogram._upper_bounds)
            entry = self._observations[histogram] = (bounds, [0] * len(bounds), [0.0])
        bounds, buckets, total = entry
        buckets[bisect_left(bounds, value)] += 1
        total[0] += value

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        for counter, amount in counts.items():
            counter.inc(amount)
        observations, self._observations = self._observations, {}
        for histogram, (_, buckets, total) in observations.items():
            # prometheus_client's Histogram keeps one value per bucket (not cumulative) and
            # a sum; adding the batch there is what observe() would have done value by value.
            for index, count in enumerate(buckets):
                if count:
                    histogram._buckets[index].inc(count)
            histogram._sum.inc(total[0])


TALLY = Tally()
