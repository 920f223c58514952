"""Room broadcast across shards: one sender, M listeners in one room, 1 shard beside 2.

    make bench-broadcast
    .venv/bin/python bench/broadcast.py [--listeners 1000] [--workers 1,2] [--duration 10]

For each configuration (a fresh ``socketspec-cluster bench_app:socket --workers N``
serving bench/apps/bench_app.py):

- ``--listeners`` connections each send ``join`` (the room ``hall``) and wait for its ack;
  the kernel spreads them over the shards (SO_REUSEPORT), and the ``shard`` field of each
  ``__connect__`` greeting says where each one landed.
- One sender connection, not a member of the room, sends ``shout`` messages; the handler
  broadcasts each payload to ``hall`` as ``said``. With several shards the sender is on
  a shard other than the room's home (``--sender-shard away``), so every broadcast takes
  the whole path: sender's shard -> home -> one message per shard with members.
- Pacing: one listener per shard is a probe; the sender keeps at most ``--window``
  broadcasts beyond the slowest probe (a broadcast is done when every shard has written
  it), i.e. as fast as the server takes them without unbounded queues anywhere.
- ``--warmup`` then ``--duration`` seconds measured; then sending stops and every listener
  must receive every broadcast (bounded wait): missing or extra deliveries are reported.

Reported per configuration: deliveries/s (``said`` frames received by all listeners),
broadcasts/s, delivery latency p50/p99 (a send timestamp rides in the payload; every
``--sample-every``-th frame of each listener is timed, on arrival at the generator), the
server's CPU (supervisor and shards, user + system, /proc) over the measured window and
per delivery, and the generator's own CPU (near 1.00 core: it set the pace).

The generator runs on core 1 (``--no-pin``: anywhere); the server is never pinned, so
with 2 shards it uses both cores and competes with the generator: server CPU per
delivery is the figure to compare. One JSON line per configuration on stdout; a markdown
table in bench/results/broadcast-latest.md. Every loop is bounded by count and time; only
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import uvloop
from echo import cpu_model, number, positive, raise_fd_limit
from loadgen import (
    HOST,
    MAX_BUFFER,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    BenchClient,
    Stats,
    client_frame,
    close_clients,
)
from servers import (
    BIN,
    CLOCK_TICKS,
    Server,
    ServerError,
    descendants,
    machine_busy_seconds,
    source_revision,
    start_server,
    tree_cpu_seconds,
)

HERE = Path(__file__).resolve().parent
GENERATOR_CPU = 1
ROOM = "hall"
SAID_PREFIX = b'{"event":"said"'
PING_PREFIX = b'{"event":"__ping__"'
STAMP_KEY = b'"t":"'
STAMP_DIGITS = 19
ZERO_KEY = b"\0\0\0\0"  # a constant mask key: the payload goes out as is (see loadgen.py)
JOIN_FRAME = client_frame(OP_TEXT, b'{"event":"join","payload":{},"ack":1}', ZERO_KEY)
PONG_FRAME = client_frame(OP_TEXT, b'{"event":"__pong__","payload":{}}', ZERO_KEY)
SENDER_ATTEMPTS = 32
SATURATED = 0.9  # cores: a generator this busy set the pace


def said_envelope(size: int, stamp: int = 0) -> bytes:
    """The ``said`` envelope listeners receive, exactly ``size`` bytes (at least 60)."""
    base = b'{"event":"said","payload":{"t":"%0*d","pad":""}}' % (STAMP_DIGITS, stamp)
    if size < len(base):
        raise ValueError(f"message size must be at least {len(base)} bytes")
    return base[:-3] + b"x" * (size - len(base)) + base[-3:]


# -- the generator's connections ------------------------------------------------------------------


@dataclass
class RoomStats(Stats):
    said: int = 0
    acks: int = 0
    sampling: bool = False
    sample_every: int = 10
    latencies_ns: dict[int, list[int]] = field(default_factory=dict)  # by listener shard
    unparsed_stamps: int = 0


class RoomClient(BenchClient):
    """A connection that records its shard, its join ack and the ``said`` frames it gets."""

    stats: RoomStats

    def __init__(self, path: str, port: int, stats: RoomStats, index: int) -> None:
        super().__init__(path, port, stats, expect_greeting=True, echo_length=-1, frames=[])
        self.shard = -1
        self.said = 0
        # Staggered, so that the timed frames are spread over the broadcasts.
        self.countdown = index % stats.sample_every + 1
        self.acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_said: Any = None  # the pacer's callback, on probes only

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.acked.done():
            self.acked.set_exception(ConnectionError(f"closed before the join ack: {exc}"))
            self.acked.exception()  # only a join awaits it: no "never retrieved" warning

    def _parse(self, buf: bytearray) -> None:
        n = len(buf)
        pos = 0
        said = 0
        now = 0
        stats = self.stats
        while n - pos >= 2:
            first = buf[pos]
            length = buf[pos + 1]
            header = 2
            if length >= 126:
                if length & 0x80:
                    self._fail("masked server frame")
                    return
                if length == 126:
                    if n - pos < 4:
                        break
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                    header = 4
                else:
                    if n - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    header = 10
            start = pos + header
            end = start + length
            if end > n:
                break
            opcode = first & 0x0F
            if opcode == OP_TEXT and buf.startswith(SAID_PREFIX, start):
                said += 1
                self.countdown -= 1
                if not self.countdown:
                    self.countdown = stats.sample_every
                    if stats.sampling:
                        if not now:
                            now = time.perf_counter_ns()
                        self._sample(buf, start, end, now)
            elif opcode == OP_PING:
                stats.pings += 1
                if self.transport is not None:
                    self.transport.write(client_frame(OP_PONG, bytes(buf[start:end]), ZERO_KEY))
            elif opcode == OP_CLOSE:
                self._on_close(bytes(buf[start:end]))
                return
            elif opcode != OP_PONG:
                self._other(bytes(buf[start:end]))
            pos = end
        if pos:
            del buf[:pos]
        elif n > MAX_BUFFER:
            self._fail("frame larger than the generator's buffer")
            return
        if said:
            self.said += said
            stats.said += said
            if self.on_said is not None:
                self.on_said()

    def _sample(self, buf: bytearray, start: int, end: int, now: int) -> None:
        at = buf.find(STAMP_KEY, start, end)
        try:
            stamp = int(buf[at + len(STAMP_KEY) : at + len(STAMP_KEY) + STAMP_DIGITS])
        except ValueError:
            self.stats.unparsed_stamps += 1
            return
        samples = self.stats.latencies_ns.get(self.shard)
        if samples is None:
            samples = self.stats.latencies_ns[self.shard] = []
        samples.append(now - stamp)

    def _other(self, message: bytes) -> None:
        stats = self.stats
        if message.startswith(PING_PREFIX):  # the app's heartbeat: answer it
            stats.pings += 1
            if self.transport is not None:
                self.transport.write(PONG_FRAME)
            return
        try:
            envelope = orjson.loads(message)
            event = envelope.get("event")
        except (orjson.JSONDecodeError, AttributeError):
            stats.error(f"unreadable message: {message[:120]!r}")
            return
        if event == "__connect__":
            shard = (envelope.get("payload") or {}).get("shard", 0)
            self.shard = shard if isinstance(shard, int) else -1
            if not self.opened.done():
                self.opened.set_result(None)
        elif event == "__ack__" and envelope.get("ack") == 1:
            stats.acks += 1
            if not self.acked.done():
                self.acked.set_result(None)
        else:
            stats.other_messages += 1
            if event == "__error__":
                stats.error(f"__error__: {message[:200]!r}")
                if not self.acked.done():
                    self.acked.set_exception(ConnectionError(f"join refused: {message[:200]!r}"))


async def open_room_clients(
    count: int,
    server: Server,
    stats: RoomStats,
    *,
    join: bool,
    first_index: int = 0,
    concurrency: int = 64,
    timeout: float = 10.0,
    deadline: float = 60.0,
) -> tuple[list[RoomClient], int]:
    """Open ``count`` connections past their greeting (and their join ack when ``join``),
    ``concurrency`` at a time; returns (the clients, how many failed). Bounded by
    ``timeout`` per connection and ``deadline`` overall."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    clients: list[RoomClient] = []
    failures = 0
    stop_at = time.monotonic() + deadline

    async def one(index: int) -> None:
        nonlocal failures
        async with gate:
            if time.monotonic() > stop_at:
                failures += 1
                return
            try:
                async with asyncio.timeout(timeout):
                    _, client = await loop.create_connection(
                        lambda: RoomClient(server.path, server.port, stats, index),
                        HOST,
                        server.port,
                    )
                    await client.opened
                    if join:
                        assert client.transport is not None
                        client.transport.write(JOIN_FRAME)
                        await client.acked
            except (OSError, TimeoutError) as exc:
                failures += 1
                stats.error(f"connect: {type(exc).__name__}: {exc}")
                return
            clients.append(client)

    await asyncio.gather(*(one(first_index + k) for k in range(count)))
    return clients, failures


class Pacer:
    """Keeps at most ``window`` broadcasts beyond what the slowest shard's probe has seen."""

    def __init__(self, sender: RoomClient, probes: list[RoomClient], window: int, size: int):
        self.sender = sender
        self.probes = probes
        self.window = window
        self.template = said_envelope(size).replace(b'"said"', b'"shout"', 1)
        self.stamp_at = self.template.index(STAMP_KEY) + len(STAMP_KEY)
        self.sent = 0
        self.sending = False

    def frame(self, stamp: int) -> bytes:
        at = self.stamp_at
        payload = b"%s%0*d%s" % (
            self.template[:at],
            STAMP_DIGITS,
            stamp,
            self.template[at + STAMP_DIGITS :],
        )
        return client_frame(OP_TEXT, payload, ZERO_KEY)

    def start(self) -> None:
        self.sending = True
        for probe in self.probes:
            probe.on_said = self.advance
        self.advance()

    def stop(self) -> None:
        self.sending = False

    def advance(self) -> None:
        if not self.sending:
            return
        transport = self.sender.transport
        if transport is None or transport.is_closing():
            return
        target = min(probe.said for probe in self.probes) + self.window
        if target > self.sent:
            frame = self.frame(time.perf_counter_ns())
            transport.write(frame * (target - self.sent))
            self.sent = target


# -- one configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessUsage:
    """One process: user and system CPU seconds (/proc/<pid>/stat), read and write
    syscalls (/proc/<pid>/io: libuv sends on TCP with write/writev, so syscw counts them)."""

    user: float = 0.0
    system: float = 0.0
    reads: int = 0
    writes: int = 0

    def __sub__(self, other: ProcessUsage) -> ProcessUsage:
        return ProcessUsage(
            self.user - other.user,
            self.system - other.system,
            self.reads - other.reads,
            self.writes - other.writes,
        )


def process_usage(pid: int) -> ProcessUsage:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        io = dict(line.split(": ", 1) for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except (OSError, ValueError):
        return ProcessUsage()
    fields = text[text.rindex(")") + 2 :].split()
    return ProcessUsage(
        int(fields[11]) / CLOCK_TICKS,
        int(fields[12]) / CLOCK_TICKS,
        int(io.get("syscr", 0)),
        int(io.get("syscw", 0)),
    )


def core_busy_seconds() -> list[float]:
    """Busy CPU seconds of each core since boot (/proc/stat cpuN lines; idle, iowait not)."""
    busy = []
    with open("/proc/stat") as stat:
        for line in stat:
            if not line.startswith("cpu"):
                break
            if line.startswith("cpu "):
                continue
            ticks = [int(value) for value in line.split()[1:9]]
            busy.append((sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS)
    return busy


def other_processes(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """Every other process: (name, user + system CPU seconds, reaped children included)."""
    table = {}
    for entry in os.listdir("/proc")[:100_000]:
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        table[int(entry)] = (name, sum(int(value) for value in fields[11:15]) / CLOCK_TICKS)
    return table


@dataclass
class Snapshot:
    said: int
    sent: int
    server_cpu: float
    per_process: dict[int, ProcessUsage]
    generator_cpu: float
    machine_busy: float
    cores: list[float]
    others: dict[int, tuple[str, float]]
    wall: float


def snapshot(stats: RoomStats, pacer: Pacer, server: Server) -> Snapshot:
    tree = descendants(server.pid)
    return Snapshot(
        said=stats.said,
        sent=pacer.sent,
        server_cpu=tree_cpu_seconds(server.pid),
        per_process={pid: process_usage(pid) for pid in tree},
        generator_cpu=time.process_time(),
        machine_busy=machine_busy_seconds(),
        cores=core_busy_seconds(),
        others=other_processes({os.getpid(), *tree}),
        wall=time.perf_counter(),
    )


def busiest_others(before: Snapshot, after: Snapshot, elapsed: float) -> list[dict[str, Any]]:
    """Other processes that used at least 2 % of a core in the window, busiest first."""
    used = [
        (cpu - before.others.get(pid, (name, 0.0))[1], pid, name)
        for pid, (name, cpu) in after.others.items()
    ]
    used.sort(reverse=True)
    return [
        {"pid": pid, "name": name, "cores": round(cpu / elapsed, 3)}
        for cpu, pid, name in used[:5]
        if cpu / elapsed >= 0.02
    ]


def wait_for_quiet(seconds: float, threshold: float = 0.3, step: float = 0.5) -> float:
    """Wait (at most ``seconds``) until the machine is less busy than ``threshold`` cores
    over ``step``; returns the last measured busy cores."""
    stop_at = time.monotonic() + seconds
    while True:
        busy0, wall0 = machine_busy_seconds(), time.perf_counter()
        time.sleep(step)
        busy = (machine_busy_seconds() - busy0) / (time.perf_counter() - wall0)
        if busy < threshold or time.monotonic() > stop_at:
            return round(busy, 3)


def percentile(ordered: list[int], fraction: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return round(ordered[index] / 1e6, 3)


async def wait_until(condition: Any, timeout: float, step: float = 0.02) -> bool:
    stop_at = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > stop_at:
            return False
        await asyncio.sleep(step)
    return True


async def broadcast_workload(
    server: Server, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    stats = RoomStats(sample_every=args.sample_every)
    home = zlib.crc32(ROOM.encode()) % workers
    opened_at = time.perf_counter()
    listeners, failed = await open_room_clients(
        args.listeners, server, stats, join=True, deadline=args.connect_deadline
    )
    per_shard: dict[int, int] = {}
    for listener in listeners:
        per_shard[listener.shard] = per_shard.get(listener.shard, 0) + 1
    result: dict[str, Any] = {
        "listeners": len(listeners),
        "failed_listeners": failed,
        "listeners_per_shard": {str(k): v for k, v in sorted(per_shard.items())},
        "connect_and_join_s": round(time.perf_counter() - opened_at, 2),
        "room_home_shard": home,
    }
    # The sender: on a shard other than the room's home when asked and possible.
    candidates: list[RoomClient] = []
    sender: RoomClient | None = None
    for attempt in range(SENDER_ATTEMPTS):
        opened, _ = await open_room_clients(
            1, server, stats, join=False, first_index=args.listeners + attempt
        )
        candidates += opened
        if opened and (args.sender_shard == "any" or workers == 1 or opened[0].shard != home):
            sender = opened[0]
            break
    extra = [client for client in candidates if client is not sender]
    await close_clients(extra)
    probes = [next(c for c in listeners if c.shard == shard) for shard in sorted(per_shard)]
    if sender is None or not probes:
        await close_clients(listeners + candidates)
        return {**result, "error": "no sender or no listeners", "errors": stats.errors}
    result["sender_shard"] = sender.shard
    pacer = Pacer(sender, probes, args.window, args.size)
    try:
        pacer.start()
        await asyncio.sleep(args.warmup)
        stats.sampling = True
        before = snapshot(stats, pacer, server)
        await asyncio.sleep(args.duration)
        after = snapshot(stats, pacer, server)
        stats.sampling = False
        pacer.stop()
        sent = pacer.sent
        drained = await wait_until(
            lambda: all(c.said >= sent or c.lost.done() for c in listeners), args.drain_timeout
        )
        await asyncio.sleep(0.2)  # anything beyond ``sent`` would be a duplicate
    finally:
        pacer.stop()
        await close_clients([*listeners, sender])
    elapsed = after.wall - before.wall
    deliveries = after.said - before.said
    broadcasts = after.sent - before.sent
    server_cpu = after.server_cpu - before.server_cpu
    generator_cpu = (after.generator_cpu - before.generator_cpu) / elapsed
    by_shard = {shard: sorted(samples) for shard, samples in stats.latencies_ns.items()}
    latencies = sorted(sample for samples in by_shard.values() for sample in samples)
    used = {
        pid: usage - before.per_process.get(pid, ProcessUsage())
        for pid, usage in after.per_process.items()
    }
    user = sum(usage.user for usage in used.values())
    system = sum(usage.system for usage in used.values())
    writes = sum(usage.writes for usage in used.values())
    reads = sum(usage.reads for usage in used.values())
    result.update(
        window=args.window,
        message_bytes=args.size,
        seconds=round(elapsed, 3),
        broadcasts=broadcasts,
        broadcasts_per_s=round(broadcasts / elapsed, 1),
        deliveries=deliveries,
        deliveries_per_s=round(deliveries / elapsed),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_samples=len(latencies),
        latency_ms_by_shard={
            str(shard): [percentile(samples, 0.50), percentile(samples, 0.99)]
            for shard, samples in sorted(by_shard.items())
        },
        server_cpu_s=round(server_cpu, 3),
        server_cpu_s_by_process={
            ("supervisor" if pid == server.pid else f"shard pid {pid}"): {
                "user": round(usage.user, 3),
                "system": round(usage.system, 3),
            }
            for pid, usage in used.items()
        },
        server_system_share=round(system / (system + user), 3) if system + user else None,
        server_write_syscalls_per_delivery=round(writes / deliveries, 3) if deliveries else None,
        server_read_syscalls_per_broadcast=round(reads / broadcasts, 3) if broadcasts else None,
        server_cpu_us_per_delivery=round(server_cpu / deliveries * 1e6, 3) if deliveries else None,
        server_cpu_utilization=round(server_cpu / elapsed, 3),
        generator_cpu_utilization=round(generator_cpu, 3),
        generator_saturated=generator_cpu >= SATURATED,
        other_cpu_utilization=round(
            max(
                0.0,
                (after.machine_busy - before.machine_busy)
                - server_cpu
                - (after.generator_cpu - before.generator_cpu),
            )
            / elapsed,
            3,
        ),
        core_busy=[
            round((b - a) / elapsed, 3) for a, b in zip(before.cores, after.cores, strict=True)
        ],
        other_processes=busiest_others(before, after, elapsed),
        broadcasts_sent=sent,
        drained=drained,
        missing_deliveries=sum(max(0, sent - c.said) for c in listeners),
        extra_deliveries=sum(max(0, c.said - sent) for c in listeners),
        unparsed_stamps=stats.unparsed_stamps,
        pings=stats.pings,
        other_messages=stats.other_messages,
        server_closes=stats.server_closes,
        close_codes={str(code): n for code, n in stats.close_codes.items()},
        errors=stats.errors,
    )
    return result


def run_one(workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh cluster for one configuration; stopped afterwards whatever happens."""
    record: dict[str, Any] = {"config": f"{workers} shard" + ("s" if workers > 1 else "")}
    record["workers"] = workers
    argv = [
        str(BIN / "socketspec-cluster"),
        "bench_app:socket",
        "--workers",
        str(workers),
        "--port",
        "0",
    ]
    # Other work on the machine (another test run, say) disturbs the numbers: wait a little.
    record["machine_busy_before"] = wait_for_quiet(args.quiet_wait)
    # Started before this process pins itself, so the server may use every core.
    everywhere = os.sched_getaffinity(0)
    try:
        server = start_server(f"broadcast-{workers}", argv, cwd=HERE / "apps")
    except ServerError as exc:
        return {**record, "error": str(exc)}
    try:
        record["server_processes"] = len(descendants(server.pid))
        record["server_cores"] = sorted(os.sched_getaffinity(server.pid))
        if args.pin:
            os.sched_setaffinity(0, {GENERATOR_CPU})
        record["generator_cores"] = sorted(os.sched_getaffinity(0))
        record.update(uvloop.run(broadcast_workload(server, workers, args)))
    finally:
        os.sched_setaffinity(0, everywhere)
        code = server.stop()
    record["server_exit"] = code
    if code not in (0, None):
        record["server_log"] = server.log_tail(5)
    return record


# -- report ---------------------------------------------------------------------------------------


def machine_state() -> dict[str, str]:
    state = {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        state["load average"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(("MemTotal:", "MemAvailable:")):
                name, value = line.split(":", 1)
                state[name] = f"{int(value.split()[0]) // 1024:,} MiB"
    except (OSError, ValueError):
        pass
    return state


def problems(record: dict[str, Any]) -> str:
    found = [
        f"{key}: {value}"
        for key in (
            "error",
            "failed_listeners",
            "missing_deliveries",
            "extra_deliveries",
            "server_closes",
            "unparsed_stamps",
            "errors",
        )
        if (value := record.get(key)) not in (None, 0, [])
    ]
    if record.get("drained") is False:
        found.append("not drained")
    if record.get("server_exit") not in (0, None):
        found.append(f"server exit {record['server_exit']}")
    return "; ".join(found) or "none"


def markdown(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    started: dt.datetime,
    machine: dict[str, str],
) -> str:
    pinning = (
        f"load generator (Python, uvloop, one process) pinned to core {GENERATOR_CPU}, "
        "server not pinned (its shards may run on every core, the generator's included)"
        if args.pin
        else "nothing pinned"
    )
    lines = [
        "# Room broadcast benchmark",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC; `make bench-broadcast` (bench/broadcast.py); "
        f"socketspec at {source_revision()}; {pinning}.",
        "",
        "| shards | listeners per shard | sender on | broadcasts/s | deliveries/s "
        "| latency p50 / p99 (ms) | server CPU (s) | server µs CPU / delivery "
        "| server CPU busy | generator CPU busy | rest busy | problems |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for record in results:
        shards = record.get("listeners_per_shard") or {}
        home = record.get("room_home_shard")
        sender = record.get("sender_shard")
        sender_text = "–" if sender is None else f"{sender}" + (" (home)" if sender == home else "")
        generator = number(record.get("generator_cpu_utilization"), 2)
        if record.get("generator_saturated"):
            generator += " (saturated)"
        lines.append(
            f"| {record.get('workers')} "
            f"| {' / '.join(f'{v}' for v in shards.values()) or '–'} "
            f"| {sender_text} "
            f"| {number(record.get('broadcasts_per_s'))} "
            f"| {number(record.get('deliveries_per_s'))} "
            f"| {number(record.get('latency_p50_ms'), 1)} / "
            f"{number(record.get('latency_p99_ms'), 1)} "
            f"| {number(record.get('server_cpu_s'), 2)} "
            f"| {number(record.get('server_cpu_us_per_delivery'), 2)} "
            f"| {number(record.get('server_cpu_utilization'), 2)} "
            f"| {generator} "
            f"| {number(record.get('other_cpu_utilization'), 2)} "
            f"| {problems(record)} |"
        )
    lines += [
        "",
        "| shards | latency p50 / p99 by listener shard (ms) | server user / system CPU (s) "
        "| server write syscalls / delivery | core busy | machine busy before "
        "| other processes in the window |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for record in results:
        by_process = (record.get("server_cpu_s_by_process") or {}).values()
        user = sum(usage["user"] for usage in by_process)
        system = sum(usage["system"] for usage in by_process)
        latency = ", ".join(
            f"shard {shard}: {number(p50, 1)} / {number(p99, 1)}"
            for shard, (p50, p99) in (record.get("latency_ms_by_shard") or {}).items()
        )
        cores = " / ".join(number(busy, 2) for busy in record.get("core_busy") or [])
        others = ", ".join(
            f"{other['name']} ({other['pid']}) {other['cores']:.2f}"
            for other in record.get("other_processes") or []
        )
        lines.append(
            f"| {record.get('workers')} | {latency or '–'} "
            f"| {number(user, 2)} / {number(system, 2)} "
            f"| {number(record.get('server_write_syscalls_per_delivery'), 2)} "
            f"| {cores or '–'} | {number(record.get('machine_busy_before'), 2)} "
            f"| {others or 'none over 0.02'} |"
        )
    lines += [
        "",
        "Method. `socketspec-cluster bench_app:socket --workers N` "
        "(bench/apps/bench_app.py), a fresh cluster per row. "
        f"{args.listeners} listener connections join the room `{ROOM}` (the kernel spreads "
        "them over the shards; counts from each `__connect__` greeting's `shard`); one more "
        "connection, not a member, sends `shout` and the handler broadcasts the payload to "
        f"`{ROOM}` as `said` ({args.size}-byte envelope). With 2 shards the sender sits on the "
        "shard that is not the room's home (room home = crc32(name) % N), so each broadcast "
        "goes sender's shard → home → one message per shard with members. The sender keeps "
        f"at most {args.window} broadcasts ahead of the slowest shard (one probe listener per "
        "shard), i.e. as fast as the server takes them with bounded queues. "
        f"{args.warmup:g} s warm-up, then {args.duration:g} s measured; deliveries/s counts "
        "the `said` frames all listeners received in that window. Latency: send timestamp "
        f"in the payload, every {args.sample_every}th frame of each listener timed on "
        "arrival at the generator (so it includes the generator's own queueing). The loop is "
        "closed, so latency is mostly queueing behind the window: about window ÷ "
        "broadcasts/s, not the latency of an idle server. After the "
        "window sending stops and every listener must get every broadcast (missing or "
        "extra deliveries are problems). Server CPU is user + system of the supervisor and "
        "all shards (/proc) over the window; µs per delivery is the figure to compare "
        "between rows, since with 2 shards the server and the generator share both cores "
        "and the throughput is partly the generator's. CPU busy is in cores; a generator "
        f'at {SATURATED:.2f} or more is marked saturated (it set the pace). "Rest busy" is '
        "all other busy CPU (/proc/stat less server and generator), loopback work included; "
        "other processes that used 2 % of a core or more in the window are named, and before "
        f"each row the script waits up to {args.quiet_wait:g} s for the machine to fall "
        "below 0.3 busy cores. Write syscalls come from /proc/<pid>/io `syscw` (libuv sends "
        "with write/writev).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()) + ". "
        f"Versions: socketspec {version('socketspec')}, uvloop {version('uvloop')}, "
        f"orjson {version('orjson')}.",
        "",
    ]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated shard counts")
    parser.add_argument("--listeners", type=positive(int), default=1000)
    parser.add_argument("--window", type=positive(int), default=8, help="broadcasts in flight")
    parser.add_argument("--size", type=positive(int), default=100, help="said envelope bytes")
    parser.add_argument("--warmup", type=positive(float), default=2.0, help="seconds")
    parser.add_argument("--duration", type=positive(float), default=10.0, help="seconds")
    parser.add_argument("--sample-every", type=positive(int), default=10)
    parser.add_argument("--sender-shard", choices=("away", "any"), default="away")
    parser.add_argument("--drain-timeout", type=positive(float), default=10.0)
    parser.add_argument("--connect-deadline", type=positive(float), default=60.0)
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="seconds to wait at most for an idle machine before each configuration",
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--markdown", type=Path, default=HERE / "results" / "broadcast-latest.md")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(n) for n in args.workers.split(",") if n]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, got {args.workers!r}")
    if not args.workers or any(not 1 <= n <= 16 for n in args.workers):
        parser.error("--workers: shard counts from 1 to 16")
    if args.duration > 200 or args.warmup > 60 or args.listeners > 20_000:
        # Beyond that the app's idle timeout (300 s) would close the silent listeners.
        parser.error("--duration is at most 200 s, --warmup 60 s, --listeners 20000")
    try:
        said_envelope(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (os.cpu_count() or 1) <= GENERATOR_CPU:
        args.pin = False
    raise_fd_limit(args.listeners + SENDER_ATTEMPTS + 512)  # the servers inherit it
    started = dt.datetime.now(dt.UTC)
    machine = machine_state()
    results = []
    for workers in args.workers:
        print(f"[bench] broadcast, {workers} shard(s) ...", file=sys.stderr, flush=True)
        record = run_one(workers, args)
        results.append(record)
        print(json.dumps(record), flush=True)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(results, args, started, machine))
    print(f"[bench] wrote {args.markdown}", file=sys.stderr)
    return 1 if any("error" in record for record in results) else 0


if __name__ == "__main__":
    sys.exit(main())
