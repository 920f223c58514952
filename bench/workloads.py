"""The workloads of bench/run.py, each driving one running server with bench/generator.py.

Each workload is a coroutine ``(server, dialect, options) -> result`` that opens its
connections, loads the server for a warm-up and then a measured window, reads the
server's process tree (CPU from /proc) and the generator's own CPU around the window,
and closes everything it opened (bounded, also on failure). Its result is a flat dict:
the workload's rates and latencies, the server's CPU seconds over the window and per
message or delivery, the generator's CPU busy (``generator_saturated`` at 0.9 of a core
or more: the generator then set the pace), and every failure counted.

- ``echo``: ``connections`` connections keep ``inflight`` echo messages each in flight.
- ``latency``: one connection, one echo in flight; round-trip times p50/p99.
- ``broadcast``: ``members`` connections join ``hall``; one more connection (not a
  member) shouts as fast as the server takes it, at most ``window`` broadcasts ahead of
  the slowest member; deliveries/s and delivery latency (send timestamp in the payload,
  every ``sample_every``-th delivery of each member timed); after the window every member
  must have received every broadcast, once.
- ``fanout``: the same room, ``rate`` broadcasts a second on a timer; every delivery is
  timed (time from the shout to each member's receipt).
- ``idle``: ``idle`` connections opened and left idle; growth of the server tree's
  resident memory per connection.

Only 127.0.0.1; every loop is bounded by count and time.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from generator import (
    ECHO,
    OP_TEXT,
    SAID,
    SOCKETSPEC,
    Client,
    Dialect,
    Pacer,
    Stamper,
    Stats,
    client_frame,
    close_clients,
    echo_payload,
    open_clients,
    stop_all,
)
from servers import Server, machine_busy_seconds, tree_cpu_seconds, tree_rss_kib

ROOM = "hall"
SATURATED = 0.9  # cores: a generator this busy set the pace
SENDER_ATTEMPTS = 32  # connections tried to find a sender on a shard other than the home
WARM_CONNECTIONS = 10


@dataclass(frozen=True)
class Options:
    duration: float = 5.0  # measured window, seconds
    warmup: float = 1.0
    size: int = 100  # bytes of socketspec's envelope; other envelopes carry the same payload
    connections: int = 50
    inflight: int = 8
    members: int = 1000
    window: int = 8
    sample_every: int = 10
    rate: float = 5.0  # fan-out broadcasts per second
    idle: int = 5000
    settle: float = 1.0
    drain_timeout: float = 10.0
    connect_deadline: float = 60.0


# -- measuring ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    hot: int
    sent: int
    server_cpu: float
    generator_cpu: float
    busy: float
    wall: float


def snapshot(stats: Stats, server: Server, sent: int = 0) -> Snapshot:
    return Snapshot(
        hot=stats.hot,
        sent=sent,
        server_cpu=tree_cpu_seconds(server.pid),
        generator_cpu=time.process_time(),
        busy=machine_busy_seconds(),
        wall=time.perf_counter(),
    )


def measured(before: Snapshot, after: Snapshot, unit: str, units: str) -> dict[str, Any]:
    """Rate, server CPU per ``unit`` and who was busy, over one window."""
    elapsed = after.wall - before.wall
    count = after.hot - before.hot
    server_cpu = after.server_cpu - before.server_cpu
    generator_cpu = after.generator_cpu - before.generator_cpu
    generator = generator_cpu / elapsed if elapsed > 0 else 0.0
    return {
        "seconds": round(elapsed, 3),
        units: count,
        f"{units}_per_s": round(count / elapsed, 1) if elapsed > 0 else 0,
        "server_cpu_s": round(server_cpu, 3),
        f"server_cpu_us_per_{unit}": round(server_cpu / count * 1e6, 3) if count else None,
        "server_cpu_utilization": round(server_cpu / elapsed, 3) if elapsed > 0 else None,
        "generator_cpu_utilization": round(generator, 3),
        "generator_saturated": generator >= SATURATED,
        # Busy CPU of everything else (other processes, the kernel's own threads).
        "other_cpu_utilization": round(
            max(0.0, (after.busy - before.busy) - server_cpu - generator_cpu) / elapsed, 3
        )
        if elapsed > 0
        else None,
    }


def at(fraction: float, values: list[int]) -> float | None:
    """The ``fraction`` percentile of sorted nanoseconds, in milliseconds."""
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(fraction * len(values)) - 1))
    return round(values[index] / 1e6, 3)


def percentiles(stats: Stats) -> dict[str, Any]:
    ordered = sorted(sample for samples in stats.latencies_ns.values() for sample in samples)

    result: dict[str, Any] = {
        "latency_p50_ms": at(0.50, ordered),
        "latency_p99_ms": at(0.99, ordered),
        "latency_max_ms": at(1.0, ordered),
        "latency_samples": len(ordered),
    }
    if len(stats.latencies_ns) > 1:
        result["latency_ms_by_shard"] = {
            str(shard): [at(0.50, sorted(samples)), at(0.99, sorted(samples))]
            for shard, samples in sorted(stats.latencies_ns.items())
        }
    return result


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    stop_at = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > stop_at:
            return False
        await asyncio.sleep(step)
    return True


# -- echo -----------------------------------------------------------------------------------------


async def _echo(
    server: Server, dialect: Dialect, options: Options, connections: int, inflight: int
) -> dict[str, Any]:
    stats = Stats()
    message = dialect.message("echo", echo_payload(options.size))
    frame = client_frame(OP_TEXT, message)  # one mask key for every echo message of the run
    clients, failed = await open_clients(
        connections, server.port, server.path, dialect, stats, mode=ECHO
    )
    result: dict[str, Any] = {
        "connections": len(clients),
        "failed_connections": failed,
        "inflight": inflight,
        "message_bytes": len(message),
    }
    if not clients:
        return {**result, "error": "no connection", **stats.fields()}
    try:
        for client in clients:
            client.frames = [frame * k for k in range(inflight + 1)]
            client.timed = inflight == 1 and connections == 1
            client.start_pumping(inflight)
        await asyncio.sleep(options.warmup)
        stats.sampling = True
        before = snapshot(stats, server)
        await asyncio.sleep(options.duration)
        after = snapshot(stats, server)
        stats.sampling = False
        drained = await stop_all(clients, timeout=options.drain_timeout)
    finally:
        await close_clients(clients)
    result.update(measured(before, after, "message", "messages"), drained=drained)
    if connections == 1 and inflight == 1:
        result.update(percentiles(stats))
    return {**result, **stats.fields()}


async def echo(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
    return await _echo(server, dialect, options, options.connections, options.inflight)


async def latency(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
    return await _echo(server, dialect, options, 1, 1)


# -- rooms ----------------------------------------------------------------------------------------


async def _room(
    server: Server, dialect: Dialect, options: Options, *, paced: bool, workers: int = 1
) -> dict[str, Any]:
    """Members join ``hall``, one more connection shouts: paced by the slowest member
    (``paced``), else on a timer at ``options.rate``."""
    stats = Stats(sample_every=options.sample_every if paced else 1)
    opened_at = time.perf_counter()
    members, failed = await open_clients(
        options.members,
        server.port,
        server.path,
        dialect,
        stats,
        mode=SAID,
        join=True,
        deadline=options.connect_deadline,
    )
    per_shard: dict[int, int] = {}
    for member in members:
        per_shard[member.shard] = per_shard.get(member.shard, 0) + 1
    result: dict[str, Any] = {
        "members": len(members),
        "failed_members": failed,
        "connect_and_join_s": round(time.perf_counter() - opened_at, 2),
    }
    if dialect.name == SOCKETSPEC:
        result["members_per_shard"] = {str(k): v for k, v in sorted(per_shard.items())}
    # The sender: with several shards, on a shard other than the room's home, so that every
    # broadcast takes the whole path (sender's shard -> home -> every shard with members).
    home = zlib.crc32(ROOM.encode()) % workers
    sender: Client | None = None
    tried: list[Client] = []
    for attempt in range(SENDER_ATTEMPTS if workers > 1 else 1):
        opened, _ = await open_clients(
            1,
            server.port,
            server.path,
            dialect,
            stats,
            mode=SAID,
            first_index=options.members + attempt,
        )
        tried += opened
        if opened and (workers == 1 or opened[0].shard != home):
            sender = opened[0]
            break
    await close_clients([client for client in tried if client is not sender])
    if sender is None or not members:
        await close_clients([*members, *tried])
        return {**result, "error": "no sender or no members", **stats.fields()}
    if workers > 1:
        result.update(room_home_shard=home, sender_shard=sender.shard)
    stamper = Stamper(dialect, options.size)
    pacer = Pacer(sender, members, options.window, stamper)
    ticking: asyncio.Task[None] | None = None
    try:
        if paced:
            pacer.start()
        else:
            ticking = asyncio.create_task(tick(pacer, options.rate))
        await asyncio.sleep(options.warmup)
        stats.sampling = True
        before = snapshot(stats, server, pacer.sent)
        await asyncio.sleep(options.duration)
        after = snapshot(stats, server, pacer.sent)
        stats.sampling = False
        pacer.stop()
        if ticking is not None:
            ticking.cancel()
        sent = pacer.sent
        drained = await wait_until(
            lambda: all(m.count >= sent or m.lost.done() for m in members), options.drain_timeout
        )
        await asyncio.sleep(0.2)  # anything beyond ``sent`` would be a duplicate
        lost = sum(1 for m in members if m.lost.done())
    finally:
        pacer.stop()
        if ticking is not None:
            ticking.cancel()
        await close_clients([*members, sender])
    elapsed = after.wall - before.wall
    broadcasts = after.sent - before.sent
    result.update(
        measured(before, after, "delivery", "deliveries"),
        broadcasts=broadcasts,
        broadcasts_per_s=round(broadcasts / elapsed, 1) if elapsed > 0 else 0,
        window=options.window if paced else None,
        rate=None if paced else options.rate,
        message_bytes=len(stamper.before) + len(stamper.after) + 19,
        sample_every=stats.sample_every,
        **percentiles(stats),
        broadcasts_sent=sent,
        drained=drained,
        missing_deliveries=sum(max(0, sent - m.count) for m in members),
        extra_deliveries=sum(max(0, m.count - sent) for m in members),
        members_lost=lost,
        **stats.fields(),
    )
    return result


async def tick(pacer: Pacer, rate: float) -> None:
    """One shout every 1/``rate`` seconds on a fixed schedule, until cancelled."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    next_at = loop.time()
    transport = pacer.sender.transport
    while transport is not None and not transport.is_closing():
        transport.write(pacer.stamper.frame(time.perf_counter_ns()))
        pacer.sent += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def broadcast(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
    return await _room(server, dialect, options, paced=True)


async def fanout(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
    return await _room(server, dialect, options, paced=False)


def shards(workers: int) -> Workload:
    """The paced room broadcast on a cluster of ``workers`` shards."""

    async def run(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
        return await _room(server, dialect, options, paced=True, workers=workers)

    return run


# -- idle memory ----------------------------------------------------------------------------------


async def idle(server: Server, dialect: Dialect, options: Options) -> dict[str, Any]:
    stats = Stats()

    async def connect(count: int) -> tuple[list[Client], int]:
        return await open_clients(
            count,
            server.port,
            server.path,
            dialect,
            stats,
            mode=ECHO,
            deadline=options.connect_deadline,
        )

    # One-time costs (imports, caches, the first allocations) come before the baseline.
    warm, _ = await connect(WARM_CONNECTIONS)
    await close_clients(warm)
    await asyncio.sleep(options.settle)
    rss_before = tree_rss_kib(server.pid)
    cpu_before = tree_cpu_seconds(server.pid)
    opened_at = time.perf_counter()
    clients, failed = await connect(options.idle)
    try:
        opening = time.perf_counter() - opened_at
        cpu_opening = tree_cpu_seconds(server.pid) - cpu_before
        await asyncio.sleep(options.settle)
        rss_after = tree_rss_kib(server.pid)
        alive = sum(1 for client in clients if not client.lost.done())
    finally:
        await close_clients(clients)
    opened = len(clients)
    return {
        "connections": opened,
        "failed_connections": failed,
        "alive_after_settle": alive,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_connection": round((rss_after - rss_before) / opened, 2) if opened else None,
        "open_seconds": round(opening, 3),
        "connections_per_s": round(opened / opening, 1) if opening > 0 else None,
        "server_cpu_s": round(cpu_opening, 3),
        "server_cpu_us_per_connection": round(cpu_opening / opened * 1e6, 1) if opened else None,
        **stats.fields(),
    }


Workload = Callable[[Server, Dialect, Options], Coroutine[Any, Any, dict[str, Any]]]
WORKLOADS: dict[str, Workload] = {
    "echo": echo,
    "latency": latency,
    "broadcast": broadcast,
    "fanout": fanout,
    "idle": idle,
}
