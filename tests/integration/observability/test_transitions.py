"""The supervisor's ``/metrics`` (the sum over the shards) after a scripted connection life,
and after a shard is killed with SIGKILL and replaced: counters keep what the dead shard did,
its gauges stop counting."""

from __future__ import annotations

import os
import signal
import zlib
from typing import Any

import pytest
from clusterkit import Pool
from obskit import ObsCluster, Samples, value

from socketspec.client import ErrorReply, connect

TRANSITIONS = "socketspec_connection_transitions_total"
EDGES = (
    ("connecting", "open"),
    ("connecting", "rejected"),
    ("open", "draining"),
    ("open", "closing"),
    ("draining", "closing"),
    ("closing", "closed"),
)
LIVE_STATES = ("connecting", "open", "draining", "closing")


def transitions(samples: Samples) -> dict[tuple[str, str], float]:
    return {(a, b): value(samples, TRANSITIONS, from_state=a, to_state=b) for a, b in EDGES}


def connections(samples: Samples) -> dict[str, float]:
    return {state: value(samples, "socketspec_connections", state=state) for state in LIVE_STATES}


def counters(samples: Samples, prefix: str = "socketspec_") -> dict[Any, float]:
    """Every counter sample (``*_total``, histogram ``_count``/``_sum``/``_bucket``)."""
    suffixes = ("_total", "_count", "_sum", "_bucket")
    return {
        key: v
        for key, v in samples.items()
        if key[0].startswith(prefix) and key[0].endswith(suffixes)
    }


def room_homed_on(shard: int, shards: int, prefix: str) -> str:
    """A room name whose home is ``shard`` (``crc32(name) % shards``, docs/cluster.md)."""
    n = 0
    while zlib.crc32(f"{prefix}-{n}".encode()) % shards != shard:
        n += 1
    return f"{prefix}-{n}"


@pytest.mark.parametrize("workers", [1, 2], ids=["1-shard", "2-shards"])
async def test_a_scripted_connection_life_moves_each_counter_once(
    start_cluster: Any, workers: int
) -> None:
    cluster: ObsCluster = start_cluster("obs_app:quiet", workers)
    before = await cluster.wait_metrics(
        lambda s: value(s, "socketspec_shards_up") == workers, what="every shard up"
    )
    base = transitions(before)
    assert connections(before) == dict.fromkeys(LIVE_STATES, 0.0)
    # docs/metrics.md: series of the state and registered event labels exist from the start
    present = {
        (name, dict(labels).get("event") or dict(labels).get("state")) for name, labels in before
    }
    for state in LIVE_STATES:
        assert ("socketspec_connections", state) in present, state
    for event in ("whoami", "join", "leave", "say", "boom", "slow", "flood"):
        assert ("socketspec_events_received_total", event) in present, event

    def moved(samples: Samples, **edges: int) -> bool:
        """The transitions moved by ``edges`` (``connecting__open=1``), the others not."""
        now = transitions(samples)
        want = {edge: base[edge] + edges.get(f"{edge[0]}__{edge[1]}", 0) for edge in EDGES}
        return now == want

    room = room_homed_on(workers - 1, workers, "life")
    client = await connect(cluster.url())
    try:
        # open
        opened = await cluster.wait_metrics(
            lambda s: (
                moved(s, connecting__open=1)
                and connections(s) == {**dict.fromkeys(LIVE_STATES, 0.0), "open": 1.0}
            ),
            what="connecting->open once and one open connection",
        )
        assert value(opened, "socketspec_rooms") == 0

        # join
        await client.call("join", {"room": room})
        joined = await cluster.wait_metrics(
            lambda s: (
                value(s, "socketspec_room_joins_total")
                == value(before, "socketspec_room_joins_total") + 1
                and value(s, "socketspec_events_received_total", event="join")
                == value(before, "socketspec_events_received_total", event="join") + 1
                and value(s, "socketspec_rooms") == 1  # the home's gauge, as for the leave
            ),
            what="one room join",
        )
        assert value(joined, "socketspec_room_leaves_total") == value(
            before, "socketspec_room_leaves_total"
        )

        # leave
        await client.call("leave", {"room": room})
        left = await cluster.wait_metrics(
            lambda s: (
                value(s, "socketspec_room_leaves_total")
                == value(before, "socketspec_room_leaves_total") + 1
                # The gauge is the room home's, which may be another shard, told by a link
                # message after the member's shard counted the leave.
                and value(s, "socketspec_rooms") == 0
            ),
            what="one room leave",
        )
        assert (
            value(left, "socketspec_room_joins_total")
            == value(before, "socketspec_room_joins_total") + 1
        )

        # error: the handler raises
        with pytest.raises(ErrorReply) as raised:
            await client.call("boom")
        assert raised.value.code == "HANDLER_ERROR"
        errored = await cluster.wait_metrics(
            lambda s: (
                value(s, "socketspec_errors_total", code="HANDLER_ERROR")
                == value(before, "socketspec_errors_total", code="HANDLER_ERROR") + 1
            ),
            what="one HANDLER_ERROR",
        )
    finally:
        await client.close()

    # close (the client starts it)
    after = await cluster.wait_metrics(
        lambda s: (
            moved(s, connecting__open=1, open__closing=1, closing__closed=1)
            and connections(s) == dict.fromkeys(LIVE_STATES, 0.0)
        ),
        what="open->closing and closing->closed once, no connection left",
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("socketspec_events_received_total", event="join") == 1
    assert delta("socketspec_events_received_total", event="leave") == 1
    assert delta("socketspec_events_received_total", event="boom") == 1
    assert delta("socketspec_events_received_total", event="__unknown__") == 0
    assert delta("socketspec_events_handled_total", event="join", outcome="ok") == 1
    assert delta("socketspec_events_handled_total", event="leave", outcome="ok") == 1
    assert delta("socketspec_events_handled_total", event="boom", outcome="error") == 1
    assert delta("socketspec_events_handled_total", event="boom", outcome="ok") == 0
    assert delta("socketspec_handler_duration_seconds_count", event="boom") == 1
    assert delta("socketspec_handler_duration_seconds_count", event="join") == 1
    assert delta("socketspec_room_joins_total") == 1
    assert delta("socketspec_room_leaves_total") == 1
    assert value(after, "socketspec_rooms") == 0
    errors_after = {k: v for k, v in after.items() if k[0] == "socketspec_errors_total"}
    errors_before = {k: value(before, k[0], **dict(k[1])) for k in errors_after}
    changed = {dict(k[1])["code"]: v - errors_before[k] for k, v in errors_after.items()}
    assert {code: d for code, d in changed.items() if d} == {"HANDLER_ERROR": 1}
    assert value(errored, "socketspec_errors_total", code="HANDLER_ERROR") == value(
        after, "socketspec_errors_total", code="HANDLER_ERROR"
    )
    # data messages: join, leave, boom in; greeting, two recovery tokens (after the join
    # and the leave), two acks and the error out
    assert delta("socketspec_frames_received_total") == 3
    assert delta("socketspec_frames_sent_total") == 6
    assert delta("socketspec_bytes_received_total") > 0
    assert delta("socketspec_bytes_sent_total") > 0
    # the client closed: no close the server started
    closes = {k: v for k, v in after.items() if k[0] == "socketspec_connection_closes_total"}
    assert all(v == value(before, k[0], **dict(k[1])) for k, v in closes.items()), closes


async def test_a_killed_shard_keeps_its_counters_and_its_gauges_stop_counting(
    start_cluster: Any,
) -> None:
    cluster: ObsCluster = start_cluster("obs_app:quiet", 2)
    process = cluster.process
    room = room_homed_on(1, 2, "doomed")
    async with Pool(cluster.url()) as pool:
        placed = await pool.on_shards({0: 1, 1: 2})
        for client in placed[1]:
            await client.call("join", {"room": room})
            with pytest.raises(ErrorReply):
                await client.call("boom")
        before = await cluster.wait_metrics(
            lambda s: (
                connections(s) == {**dict.fromkeys(LIVE_STATES, 0.0), "open": 3.0}
                and value(s, "socketspec_rooms") == 1
                and value(s, "socketspec_errors_total", code="HANDLER_ERROR") == 2
                and value(s, "socketspec_room_joins_total") == 2
                and value(s, "socketspec_shards_up") == 2
            ),
            what="3 open connections, 1 room, 2 joins, 2 errors",
        )
        assert value(before, "socketspec_shard_restarts_total") == 0
        assert value(before, "socketspec_shards_configured") == 2
        kept = counters(before)

        dead = process.pids[1]
        os.kill(dead, signal.SIGKILL)
        replacement = await process.wait_ready(1, [dead], timeout=30)
        assert replacement != dead

        after = await cluster.wait_metrics(
            lambda s: (
                value(s, "socketspec_shard_restarts_total") == 1
                and value(s, "socketspec_shards_up") == 2
                and connections(s)["open"] == 1
            ),
            what="one restart, 2 shards up, only shard 0's connection open",
        )
        assert value(after, "socketspec_shards_configured") == 2
        # the dead shard's gauges stopped counting: its connections and the room homed on it
        assert connections(after) == {**dict.fromkeys(LIVE_STATES, 0.0), "open": 1.0}
        assert value(after, "socketspec_rooms") == 0
        # its counters keep what it did (nothing counted down, nothing lost)
        assert transitions(after) == transitions(before)
        assert value(after, "socketspec_errors_total", code="HANDLER_ERROR") == 2
        assert value(after, "socketspec_room_joins_total") == 2
        assert value(after, "socketspec_events_received_total", event="boom") == value(
            before, "socketspec_events_received_total", event="boom"
        )
        lost = {
            f"{name}{dict(labels)}": (v, value(after, name, **dict(labels)))
            for (name, labels), v in kept.items()
            if value(after, name, **dict(labels)) < v
        }
        assert not lost, f"counters went down after the shard died: {lost}"

        # the replacement counts on top
        fresh = await pool.on_shards({1: 1})
        assert fresh[1][0].greeting["shard"] == 1
        await cluster.wait_metrics(
            lambda s: (
                connections(s)["open"] == 2
                and value(s, TRANSITIONS, from_state="connecting", to_state="open")
                > value(before, TRANSITIONS, from_state="connecting", to_state="open")
            ),
            what="the replacement's connection counted",
        )
