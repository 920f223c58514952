"""Echo throughput and idle memory of one server process: socketspec beside websockets.

    make bench-metrics
    .venv/bin/python bench/echo.py [--duration 10] [--rounds 10] [--together 10] [--slice 2]
        [--idle 2000] [--servers websockets,socketspec,socketspec-nometrics,socketspec-echo]

For each server (a fresh subprocess per workload, pinned to core 0 while this
generator runs on core 1):

- echo: ``--connections`` connections keep ``--inflight`` messages each in flight
  (``{"event":"echo","payload":{...}}``, ``--size`` bytes; every reply is replaced by
  a new message) for ``--warmup`` then ``--duration`` seconds; reported: replies per
  second over the measured window, and the server process tree's CPU time (user +
  system, /proc/<pid>/stat) per reply.
- idle: after 10 warm-up connections come and go, open ``--idle`` connections (each
  past its handshake, and past the ``__connect__`` greeting for the socketspec app)
  and report the growth of the server tree's VmRSS per connection.

Servers: ``websockets`` (bench/peers/websockets_app.py, the websockets library on
uvloop with orjson), ``socketspec`` (socketspec-cluster serving bench/apps/bench_app.py,
metrics on as by default, ``--metrics-port 0``), ``socketspec-nometrics`` (the same
with ``--no-metrics``) and ``socketspec-echo`` (socketspec-cluster --echo: transport
only, no JSON, no app; metrics on).

Metrics on versus off: this machine's cores run up to ~1.6× slower for seconds at a
time (the host), far more than the few percent to be measured, so ``socketspec`` and
``socketspec-nometrics`` run side by side: both are started (each with its own
connections, both pinned to core 0) and warmed up, then

- in turns: ``--rounds`` rounds in which each is driven alone for ``--slice`` seconds
  (on, off; then off, on; ...), the other idle: each slice is measured like the echo
  window above, and their medians and spread are the two servers' rows;
- together: both driven at once for ``--together`` windows of ``--slice`` seconds; the
  kernel interleaves them every few milliseconds, so both see the same machine, and the
  cost of metrics per window (1 - on/off messages/s, on/off CPU per message - 1) is the
  overhead reported (its median and spread), beside the same figures from the turns.

Whenever a server announces a /metrics endpoint, the bench scrapes it once a second
during the echo workload, as Prometheus would; the supervisor answers, and its CPU is
part of the server tree's.

``SOCKETSPEC_BENCH_PROFILE=DIR`` starts the socketspec servers through
bench/profiled_cluster.py: each shard runs under cProfile and writes
DIR/shard-<pid>.prof (numbers then are not comparable with unprofiled runs).

One JSON line per server per workload on stdout (the interleaved echo with its slices);
a markdown table in bench/results/metrics-latest.md. Every loop is bounded by count and time;
only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvloop
from loadgen import HOST, BenchClient, Stats, close_clients, echo_message, open_clients
from servers import (
    BIN,
    REPO,
    Server,
    ServerError,
    machine_busy_seconds,
    process_cpu_seconds,
    source_revision,
    start_server,
    tree_cpu_seconds,
    tree_rss_kib,
)

HERE = Path(__file__).resolve().parent
SERVER_CPU = 0
GENERATOR_CPU = 1
BASELINE = "websockets"
WARM_CONNECTIONS = 10
# Metrics on, metrics off: their echo workloads run side by side, taking turns.
METRICS_ON = "socketspec"
METRICS_OFF = "socketspec-nometrics"
METRICS_BUDGET = 0.05  # the most metrics may cost of echo throughput
SLICE_SETTLE = 0.3  # seconds of load before a slice's measurement starts
TOGETHER_SETTLE = 1.0  # seconds of both loaded before the first window together
DISTURBED = 0.25  # cores busy outside the bench in an echo window: the run is disturbed
SCRAPE_INTERVAL = 1.0  # seconds: Prometheus's usual 15 s made harsh
SCRAPE_TIMEOUT = 2.0
MAX_SCRAPE_BYTES = 8 * 1024 * 1024
PROFILE_ENV = "SOCKETSPEC_BENCH_PROFILE"
CLUSTER = str(BIN / "socketspec-cluster")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    argv: list[str]
    cwd: Path
    expect_greeting: bool
    metrics: bool = False  # announces a /metrics endpoint, which the bench scrapes


TARGETS = {
    "websockets": Target(
        "websockets",
        f"websockets {version('websockets')} (bench/peers/websockets_app.py)",
        [sys.executable, str(HERE / "peers" / "websockets_app.py"), "--port", "0"],
        REPO,
        expect_greeting=False,
    ),
    METRICS_ON: Target(
        METRICS_ON,
        "socketspec-cluster bench_app:socket --metrics-port 0 (bench/apps/bench_app.py; "
        "metrics on, /metrics scraped once a second)",
        [CLUSTER, "bench_app:socket", "--port", "0", "--metrics-port", "0"],
        HERE / "apps",
        expect_greeting=True,
        metrics=True,
    ),
    METRICS_OFF: Target(
        METRICS_OFF,
        "socketspec-cluster bench_app:socket --no-metrics (the same app, metrics off)",
        [CLUSTER, "bench_app:socket", "--port", "0", "--no-metrics"],
        HERE / "apps",
        expect_greeting=True,
    ),
    "socketspec-echo": Target(
        "socketspec-echo",
        "socketspec-cluster --echo --metrics-port 0 (transport only: no JSON, no app; "
        "metrics on, /metrics scraped once a second)",
        [CLUSTER, "--echo", "--port", "0", "--metrics-port", "0"],
        REPO,
        expect_greeting=False,
        metrics=True,
    ),
}


# -- measuring ------------------------------------------------------------------------------------


class Scraper:
    """GET /metrics every ``SCRAPE_INTERVAL`` seconds, as Prometheus would, until cancelled."""

    def __init__(self, port: int, path: str) -> None:
        self.request = (
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/plain;version=0.0.4\r\n"
            b"Connection: close\r\n\r\n" % (path.encode(), HOST.encode(), port)
        )
        self.port = port
        self.scrapes = 0
        self.failures = 0
        self.bytes = 0
        self.seconds: list[float] = []
        self.last_body = b""
        self.errors: list[str] = []

    async def run(self, max_scrapes: int) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for _ in range(max_scrapes):
            await self.scrape()
            next_at += SCRAPE_INTERVAL
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def scrape(self) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT):
                reader, writer = await asyncio.open_connection(HOST, self.port)
                try:
                    writer.write(self.request)
                    data = b""
                    while len(data) < MAX_SCRAPE_BYTES and (chunk := await reader.read(65536)):
                        data += chunk
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            self.fail(f"scrape: {type(exc).__name__}: {exc}")
            return
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            self.fail(f"scrape: {head[:60]!r}")
            return
        self.scrapes += 1
        self.bytes += len(body)
        self.seconds.append(time.perf_counter() - started)
        self.last_body = body

    def fail(self, text: str) -> None:
        self.failures += 1
        if len(self.errors) < 5:
            self.errors.append(text)

    def value(self, name: str) -> float | None:
        """A metric without labels, from the last scrape."""
        for line in self.last_body.decode(errors="replace").splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "scrape_failures": self.failures,
            "scrape_errors": self.errors,
            "scrape_kib": round(self.bytes / self.scrapes / 1024, 1) if self.scrapes else 0,
            "scrape_ms_median": (
                round(statistics.median(self.seconds) * 1e3, 2) if self.seconds else None
            ),
            # What the server had counted at the last scrape (folded in once a second).
            "scraped_frames_received": self.value("socketspec_frames_received_total"),
        }


@dataclass(frozen=True)
class Snapshot:
    echoes: int
    cpu: float  # the server tree
    supervisor: float  # its first process alone
    partner: float  # the other server's tree (side by side), else 0
    generator: float
    busy: float
    wall: float
    scrapes: int


def snapshot(
    stats: Stats, server: Server, scraper: Scraper | None, partner: Server | None = None
) -> Snapshot:
    return Snapshot(
        echoes=stats.echoes,
        cpu=tree_cpu_seconds(server.pid),
        supervisor=process_cpu_seconds(server.pid),
        partner=tree_cpu_seconds(partner.pid) if partner is not None else 0.0,
        generator=time.process_time(),
        busy=machine_busy_seconds(),
        wall=time.perf_counter(),
        scrapes=scraper.scrapes if scraper is not None else 0,
    )


def window(start: Snapshot, end: Snapshot) -> dict[str, Any]:
    """What one measured window says: rate, CPU per message, who else was busy."""
    messages = end.echoes - start.echoes
    elapsed = end.wall - start.wall
    server_cpu = end.cpu - start.cpu
    generator_cpu = end.generator - start.generator
    partner_cpu = end.partner - start.partner
    if elapsed <= 0:
        return {"seconds": 0, "messages": messages, "messages_per_s": 0}
    return {
        "seconds": round(elapsed, 3),
        "messages": messages,
        "messages_per_s": round(messages / elapsed),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_us_per_message": round(server_cpu / messages * 1e6, 2) if messages else None,
        "server_cpu_utilization": round(server_cpu / elapsed, 3),
        # The supervisor's share (it answers the scrapes); the rest is the shard's.
        "supervisor_cpu_s": round(end.supervisor - start.supervisor, 3),
        "generator_cpu_utilization": round(generator_cpu / elapsed, 3),
        # Busy CPU of everything else on the machine (other processes, the kernel's own
        # threads): more than a few percent means the numbers are disturbed.
        "other_cpu_utilization": round(
            max(0.0, (end.busy - start.busy) - server_cpu - generator_cpu - partner_cpu) / elapsed,
            3,
        ),
        "scrapes": end.scrapes - start.scrapes,
    }


async def stop_all(clients: list[Any], timeout: float) -> bool:
    """Stop sending; wait (bounded) for the messages in flight. True if all came back."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = len(clients)
    if not clients:
        return True

    def one_drained() -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0 and not done.done():
            done.set_result(None)

    for client in clients:
        client.stop_pumping(one_drained)
    try:
        async with asyncio.timeout(timeout):
            await done
    except TimeoutError:
        return False
    return True


def scraper_for(server: Server) -> Scraper | None:
    return (
        None if server.metrics_port is None else Scraper(server.metrics_port, server.metrics_path)
    )


def start_scraping(scraper: Scraper | None, seconds: float) -> asyncio.Task[None] | None:
    """Scrape for about ``seconds`` (bounded). Called once the warm-up is over: by then each
    shard has written every kind of metric and created its files. (A scrape that lands while a
    shard creates one, still empty, made prometheus_client raise struct.error in the
    supervisor, which stopped the cluster; see prometheus/client_python#1199.)"""
    if scraper is None:
        return None
    return asyncio.create_task(scraper.run(int(seconds / SCRAPE_INTERVAL) + 10))


def connection_fields(stats: Stats) -> dict[str, Any]:
    return {
        "other_messages": stats.other_messages,
        "heartbeats": stats.heartbeats,
        "server_closes": stats.server_closes,
        "close_codes": {str(code): n for code, n in stats.close_codes.items()},
        "errors": stats.errors,
    }


# -- workloads ------------------------------------------------------------------------------------


async def echo_workload(server: Server, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    message = echo_message(args.size)
    clients, failed = await open_clients(
        args.connections,
        server.port,
        server.path,
        stats,
        expect_greeting=target.expect_greeting,
        message=message,
        inflight=args.inflight,
    )
    result: dict[str, Any] = {
        "connections": len(clients),
        "failed_connections": failed,
        "inflight": args.inflight,
        "message_bytes": len(message),
    }
    if not clients:
        return {**result, "errors": stats.errors}
    scraper, scraping = scraper_for(server), None
    try:
        for client in clients:
            client.start_pumping(args.inflight)
        await asyncio.sleep(args.warmup)
        scraping = start_scraping(scraper, args.duration)
        start = snapshot(stats, server, scraper)
        await asyncio.sleep(args.duration)
        end = snapshot(stats, server, scraper)
        drained = await stop_all(clients, timeout=10.0)
    finally:
        if scraping is not None:
            scraping.cancel()
        await close_clients(clients)
    result.update(window(start, end), drained=drained, **connection_fields(stats))
    if scraper is not None:
        result.update(scraper.summary())
    return result


async def side_by_side_workload(
    servers: dict[str, Server], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Metrics on and off in turns, then together (see the module's docstring); a result
    per server, with its slices (in turns) and windows (together)."""
    message = echo_message(args.size)
    stats = {name: Stats() for name in servers}
    clients: dict[str, list[BenchClient]] = {name: [] for name in servers}
    results: dict[str, dict[str, Any]] = {}
    on, off = servers[METRICS_ON], servers[METRICS_OFF]
    partner = {METRICS_ON: off, METRICS_OFF: on}
    scraper, scraping = scraper_for(on), None
    slices: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    together: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}

    def probe_side(name: str) -> Snapshot:
        return snapshot(
            stats[name], servers[name], scraper if name == METRICS_ON else None, partner[name]
        )

    try:
        for name, server in servers.items():
            clients[name], failed = await open_clients(
                args.connections,
                server.port,
                server.path,
                stats[name],
                expect_greeting=TARGETS[name].expect_greeting,
                message=message,
                inflight=args.inflight,
            )
            results[name] = {
                "connections": len(clients[name]),
                "failed_connections": failed,
                "inflight": args.inflight,
                "message_bytes": len(message),
            }
        if not all(clients.values()):
            return {name: {**results[name], "errors": stats[name].errors} for name in servers}
        drained = True
        for name in servers:  # warm-up, in turn
            for client in clients[name]:
                client.start_pumping(args.inflight)
            await asyncio.sleep(args.warmup)
            drained = await stop_all(clients[name], timeout=10.0) and drained
        scraping = start_scraping(
            scraper,
            args.rounds * 2 * (args.slice + SLICE_SETTLE + 1.0)
            + TOGETHER_SETTLE
            + args.together * args.slice
            + 10,
        )
        for index in range(args.rounds):
            order = (METRICS_ON, METRICS_OFF) if index % 2 == 0 else (METRICS_OFF, METRICS_ON)
            for name in order:
                for client in clients[name]:
                    client.start_pumping(args.inflight)
                await asyncio.sleep(SLICE_SETTLE)
                start = probe_side(name)
                await asyncio.sleep(args.slice)
                end = probe_side(name)
                drained = await stop_all(clients[name], timeout=10.0) and drained
                slices[name].append({"round": index + 1, **window(start, end)})
        # Together: both loaded at once on the one core; the kernel interleaves them.
        for name in servers:
            for client in clients[name]:
                client.start_pumping(args.inflight)
        await asyncio.sleep(TOGETHER_SETTLE)
        for index in range(args.together):
            starts = {name: probe_side(name) for name in servers}
            await asyncio.sleep(args.slice)
            for name, begun in starts.items():
                together[name].append({"window": index + 1, **window(begun, probe_side(name))})
        for name in servers:
            drained = await stop_all(clients[name], timeout=10.0) and drained
    finally:
        if scraping is not None:
            scraping.cancel()
        for group in clients.values():
            await close_clients(group)
    for name in servers:
        results[name].update(
            side_by_side_summary(slices[name]),
            drained=drained,
            **connection_fields(stats[name]),
            slices=slices[name],
            together=together[name],
        )
    if scraper is not None:
        results[METRICS_ON].update(scraper.summary())
    return results


def side_by_side_summary(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's slices: medians per slice, and totals over all of them."""
    measured = [s for s in slices if s.get("messages")]
    if not measured:
        return {"messages": 0, "messages_per_s": 0}
    seconds = sum(s["seconds"] for s in measured)
    messages = sum(s["messages"] for s in measured)
    cpu = sum(s["server_cpu_s"] for s in measured)

    def per_slice(key: str) -> float | None:
        return median([s[key] for s in measured if s.get(key) is not None])

    return {
        "slices_measured": len(measured),
        "seconds": round(seconds, 3),
        "messages": messages,
        "messages_per_s": per_slice("messages_per_s"),
        "server_cpu_us_per_message": per_slice("server_cpu_us_per_message"),
        "total_messages_per_s": round(messages / seconds),
        "total_server_cpu_us_per_message": round(cpu / messages * 1e6, 2),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_utilization": round(cpu / seconds, 3),
        "supervisor_cpu_s": round(sum(s["supervisor_cpu_s"] for s in measured), 3),
        "generator_cpu_utilization": per_slice("generator_cpu_utilization"),
        "other_cpu_utilization": per_slice("other_cpu_utilization"),
        "scrapes": sum(s["scrapes"] for s in measured),
    }


async def idle_workload(server: Server, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    message = echo_message(args.size)
    common: dict[str, Any] = {"expect_greeting": target.expect_greeting, "message": message}
    # One-time costs (imports, caches, the first allocations) come before the baseline.
    warm, _ = await open_clients(WARM_CONNECTIONS, server.port, server.path, stats, **common)
    await close_clients(warm)
    await asyncio.sleep(args.settle)
    before = tree_rss_kib(server.pid)
    clients, failed = await open_clients(
        args.idle, server.port, server.path, stats, deadline=args.connect_deadline, **common
    )
    try:
        await asyncio.sleep(args.settle)
        after = tree_rss_kib(server.pid)
    finally:
        await close_clients(clients)
    opened = len(clients)
    return {
        "connections": opened,
        "failed_connections": failed,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / opened, 2) if opened else None,
        "server_closes": stats.server_closes,
        "errors": stats.errors,
    }


Workload = Callable[[Server, Target, argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]]
WORKLOADS: dict[str, Workload] = {"echo": echo_workload, "idle": idle_workload}


# -- running --------------------------------------------------------------------------------------


def launch(target: Target, args: argparse.Namespace) -> Server:
    argv = target.argv
    if os.environ.get(PROFILE_ENV) and argv[0] == CLUSTER:
        argv = [sys.executable, str(HERE / "profiled_cluster.py"), *argv[1:]]
    return start_server(
        target.name,
        argv,
        cwd=target.cwd,
        cpu=SERVER_CPU if args.pin else None,
        expect_metrics=target.metrics,
    )


def stopped(record: dict[str, Any], server: Server) -> dict[str, Any]:
    code = server.stop()
    record["server_exit"] = code
    if code not in (0, None):
        record["server_log"] = server.log_tail(5)
    return record


def run_one(target: Target, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server process for one workload; stopped afterwards whatever happens."""
    record: dict[str, Any] = {"server": target.name, "workload": workload}
    try:
        server = launch(target, args)
    except ServerError as exc:
        return {**record, "error": str(exc)}
    try:
        record.update(uvloop.run(WORKLOADS[workload](server, target, args)))
    finally:
        stopped(record, server)
    return record


def run_side_by_side(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Fresh metrics-on and metrics-off servers, up together for the echo workload."""
    records = {
        name: {"server": name, "workload": "echo", "mode": "side by side"}
        for name in (METRICS_ON, METRICS_OFF)
    }
    servers: dict[str, Server] = {}
    try:
        for name in records:
            servers[name] = launch(TARGETS[name], args)
        for name, result in uvloop.run(side_by_side_workload(servers, args)).items():
            records[name].update(result)
    except ServerError as exc:
        for name, record in records.items():
            if name not in servers:
                record["error"] = str(exc)
    finally:
        for name, server in servers.items():
            stopped(records[name], server)
    return list(records.values())


Step = tuple[str, str]  # (server, workload); ("side by side", "echo") for the pair


def schedule(args: argparse.Namespace) -> list[Step]:
    """The runs in order. With both metrics servers selected, their echo runs side by side
    (once, where the first of them comes); everything else runs on its own."""
    pair = (METRICS_ON, METRICS_OFF)
    side_by_side = all(name in args.servers for name in pair) and "echo" in args.workloads
    plan: list[Step] = []
    for name in args.servers:
        workloads = args.workloads
        if side_by_side and name in pair:
            if not any(step[0] == "side by side" for step in plan):
                plan.append(("side by side", "echo"))
            workloads = [w for w in workloads if w != "echo"]
        plan += [(name, w) for w in workloads]
    return plan


# -- report ---------------------------------------------------------------------------------------


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}%"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: list[float], digits: int = 0) -> str:
    """min–max, or – for fewer than two values."""
    if len(values) < 2:
        return "–"
    return f"{number(min(values), digits)}–{number(max(values), digits)}"


def paired_costs(pairs: list[tuple[int, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Cost of metrics per pair of measurements (index, on, off), its median and spread, and
    over all pairs together. Throughput cost: 1 - on/off messages/s; CPU cost: on/off server
    CPU per message - 1 (positive: metrics cost that much)."""
    rows = [
        {
            "index": index,
            "on": on,
            "off": off,
            "throughput_cost": 1
            - on["messages"] / off["messages"] * off["seconds"] / on["seconds"],
            "cpu_cost": on["server_cpu_us_per_message"] / off["server_cpu_us_per_message"] - 1,
        }
        for index, on, off in pairs
        if on.get("messages") and off.get("messages")
    ]
    result: dict[str, Any] = {"rows": rows}
    if not rows:
        return result
    for key in ("throughput_cost", "cpu_cost"):
        values = sorted(row[key] for row in rows)
        quartiles = statistics.quantiles(values, n=4) if len(values) >= 2 else values * 3
        result.update(
            {
                key: statistics.median(values),
                f"{key}_q1": quartiles[0],
                f"{key}_q3": quartiles[2],
                f"{key}_min": values[0],
                f"{key}_max": values[-1],
            }
        )

    def total(side: str, key: str) -> float:
        return sum(row[side][key] for row in rows)

    result["throughput_cost_total"] = 1 - (total("on", "messages") / total("on", "seconds")) / (
        total("off", "messages") / total("off", "seconds")
    )
    result["cpu_cost_total"] = (total("on", "server_cpu_s") / total("on", "messages")) / (
        total("off", "server_cpu_s") / total("off", "messages")
    ) - 1
    return result


def metrics_overhead(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Metrics on against off, together (each window) and in turns (each round)."""
    by = {r["server"]: r for r in results if r.get("mode") == "side by side" and "error" not in r}
    if METRICS_ON not in by or METRICS_OFF not in by:
        return None
    on, off = by[METRICS_ON], by[METRICS_OFF]
    together = paired_costs(
        [
            (a["window"], a, b)
            for a, b in zip(on.get("together", []), off.get("together", []), strict=False)
        ]
    )
    turns = paired_costs(
        [
            (a["round"], a, b)
            for a, b in zip(on.get("slices", []), off.get("slices", []), strict=False)
        ]
    )
    if not together["rows"] and not turns["rows"]:
        return None
    return {"together": together, "turns": turns}


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, started: dt.datetime) -> str:
    by = {(r["server"], r["workload"]): r for r in results}
    base_echo = by.get((BASELINE, "echo"), {})
    base_idle = by.get((BASELINE, "idle"), {})
    overhead = metrics_overhead(results)
    lines = ["# Echo benchmark", ""]
    busy = [
        r["other_cpu_utilization"] for r in results if r.get("other_cpu_utilization") is not None
    ]
    if busy and max(busy) > DISTURBED:
        lines += [
            f"**Disturbed run**: other processes kept up to {max(busy):.2f} cores busy during "
            "an echo window (table below); single runs are off by as much, the metrics "
            "overhead measured together much less.",
            "",
        ]
    if os.environ.get(PROFILE_ENV):
        lines += [
            f"**Profiled run ({PROFILE_ENV}: socketspec shards under cProfile): "
            "not comparable with other runs.**",
            "",
        ]
    lines += [
        f"{started:%Y-%m-%d %H:%M} UTC; `make bench-metrics` (bench/echo.py). One server at "
        f"a time, but `{METRICS_ON}` and `{METRICS_OFF}` side by side (socketspec: a "
        "supervisor and one shard), "
        + (
            f"pinned to core {SERVER_CPU}, load generator (Python, uvloop) on core {GENERATOR_CPU}"
            if args.pin
            else "not pinned"
        )
        + f"; {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
        f"socketspec at {source_revision()}.",
        "",
        f"Echo: {args.connections} connections × {args.inflight} messages in flight, "
        f"{args.size}-byte JSON envelope, {args.warmup:g} s warm-up then {args.duration:g} s "
        f"measured; `{METRICS_ON}` and `{METRICS_OFF}` instead run side by side, up at once, "
        f"and take turns: {args.rounds} rounds of {args.slice:g} s each alone (after "
        f"{SLICE_SETTLE:g} s of load), alternating which goes first; their values are medians "
        "over those slices, ranges min–max (then they are loaded together for the overhead "
        "below). Idle: "
        f"{args.idle} connections opened after {WARM_CONNECTIONS} warm-up ones; server tree "
        "VmRSS growth per connection. Ratios are to the websockets library.",
        "",
        "| server | measured | messages/s | range | ratio | server µs CPU / message | range "
        "| ratio | KiB / idle connection | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.servers:
        echo = by.get((name, "echo"), {})
        idle = by.get((name, "idle"), {})
        rate, cpu, kib = (
            echo.get("messages_per_s"),
            echo.get("server_cpu_us_per_message"),
            idle.get("kib_per_connection"),
        )
        slices = [s for s in echo.get("slices", []) if s.get("messages")]
        measured = (
            f"{len(slices)} × {args.slice:g} s"
            if "slices" in echo
            else (f"{echo['seconds']:.0f} s" if echo.get("seconds") else "–")
        )
        lines.append(
            f"| {name} | {measured} | {number(rate)} "
            f"| {spread([s['messages_per_s'] for s in slices])} "
            f"| {ratio(rate, base_echo.get('messages_per_s'))} "
            f"| {number(cpu, 1)} "
            f"| {spread([s['server_cpu_us_per_message'] for s in slices], 1)} "
            f"| {ratio(cpu, base_echo.get('server_cpu_us_per_message'))} "
            f"| {number(kib, 1)} | {ratio(kib, base_idle.get('kib_per_connection'))} |"
        )
    if overhead is not None:
        lines += ["", *overhead_lines(overhead, args)]
    lines += [
        "",
        "| server | server CPU busy | generator CPU busy | rest of the machine busy "
        "| scrapes (ms each, KiB each) | supervisor CPU (ms / s) "
        "| RSS before → after idle (KiB) | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in args.servers:
        echo = by.get((name, "echo"), {})
        idle = by.get((name, "idle"), {})
        problems = [
            f"{workload}: {key} {brief(value)}"
            for workload, record in (("echo", echo), ("idle", idle))
            for key in (
                "error",
                "failed_connections",
                "server_closes",
                "drained",
                "errors",
                "scrape_failures",
                "scrape_errors",
                "server_exit",
            )
            if (value := record.get(key)) not in (None, 0, [], True)
        ]
        scrapes = (
            f"{echo['scrapes']} ({number(echo.get('scrape_ms_median'), 1)}, "
            f"{number(echo.get('scrape_kib'), 1)})"
            if TARGETS[name].metrics and "scrapes" in echo
            else "–"
        )
        supervisor = (
            number(echo["supervisor_cpu_s"] * 1e3 / echo["seconds"], 1)
            if TARGETS[name].argv[0] == CLUSTER and echo.get("seconds")
            else "–"
        )
        lines.append(
            f"| {name} | {number(echo.get('server_cpu_utilization'), 2)} "
            f"| {number(echo.get('generator_cpu_utilization'), 2)} "
            f"| {number(echo.get('other_cpu_utilization'), 2)} "
            f"| {scrapes} | {supervisor} "
            f"| {number(idle.get('rss_before_kib'))} → {number(idle.get('rss_after_kib'))} "
            f"| {'; '.join(problems) or 'none'} |"
        )
    lines += [
        "",
        "Servers: " + "; ".join(f"`{n}`: {TARGETS[n].description}" for n in args.servers) + ".",
        f"Versions: socketspec {version('socketspec')}, websockets {version('websockets')}, "
        f"wsproto {version('wsproto')}, uvloop {version('uvloop')}, orjson {version('orjson')}, "
        f"prometheus_client {version('prometheus_client')}.",
        "",
        "CPU busy is in cores over the measured echo window (the slices, side by side). A "
        "server near 1.00 was saturated (messages/s is then its capacity); a generator near "
        '1.00 would mean the generator set the pace. "Rest of the machine" is all other busy '
        "CPU (/proc/stat, less the server, its idle partner and the generator; the median "
        "slice side by side), the kernel's loopback work included: well above its usual "
        "level, other processes were competing and the run is noisy; the slowdowns that "
        "come from the host (this is a VM) do not show there. A server with /metrics is "
        "scraped once a second by the bench (HTTP GET, as Prometheus would) during the echo "
        "workload; the supervisor answers, and its CPU (per second measured) is counted in "
        "the server's.",
        "",
    ]
    return "\n".join(lines)


def brief(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value)}, the first: {str(value[0])[:120]}"
    return str(value)[:200]


def overhead_lines(overhead: dict[str, Any], args: argparse.Namespace) -> list[str]:
    together, turns = overhead["together"], overhead["turns"]
    lines = []
    if together["rows"]:
        cost = together["throughput_cost"]
        verdict = (
            f"within the {METRICS_BUDGET:.0%} budget"
            if cost <= METRICS_BUDGET
            else f"**over the {METRICS_BUDGET:.0%} budget**"
        )
        lines.append(
            f"**Metrics overhead: {percent(cost)} of echo throughput, "
            f"{percent(together['cpu_cost'])} server CPU per message**: {verdict}. "
            f"`{METRICS_ON}` and `{METRICS_OFF}` loaded together on core {SERVER_CPU} (the "
            "kernel interleaves them every few milliseconds: both see the same machine), "
            f"{len(together['rows'])} windows of {args.slice:g} s; medians of 1 − on/off "
            "messages/s and of on/off CPU per message − 1 (positive: metrics on is slower). "
            f"Spread: throughput cost quartiles {percent(together['throughput_cost_q1'])} to "
            f"{percent(together['throughput_cost_q3'])}, min–max "
            f"{percent(together['throughput_cost_min'])} to "
            f"{percent(together['throughput_cost_max'])}, all windows together "
            f"{percent(together['throughput_cost_total'])}; CPU cost quartiles "
            f"{percent(together['cpu_cost_q1'])} to {percent(together['cpu_cost_q3'])}, all "
            f"windows together {percent(together['cpu_cost_total'])}."
        )
    if turns["rows"]:
        lines += [
            "",
            f"In turns (each alone on the core, {len(turns['rows'])} rounds of "
            f"{args.slice:g} s, the rows above): throughput cost "
            f"{percent(turns['throughput_cost'])} (median of the rounds; quartiles "
            f"{percent(turns['throughput_cost_q1'])} to {percent(turns['throughput_cost_q3'])}, "
            f"min–max {percent(turns['throughput_cost_min'])} to "
            f"{percent(turns['throughput_cost_max'])}; all slices together "
            f"{percent(turns['throughput_cost_total'])}), CPU cost {percent(turns['cpu_cost'])} "
            f"(quartiles {percent(turns['cpu_cost_q1'])} to {percent(turns['cpu_cost_q3'])}). "
            "Other processes and the host (this VM's core runs up to ~1.6× slower for "
            "seconds at a time) disturb measurements one after the other far more than a "
            "cost of a few percent; together, both servers share every disturbance.",
        ]
    lines += [
        "",
        "| measurement | on: messages/s | off: messages/s | throughput cost "
        "| on: µs CPU / message | off: µs CPU / message | CPU cost "
        "| rest of the machine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in (("together, window", together["rows"]), ("turns, round", turns["rows"])):
        for row in rows:
            on, off = row["on"], row["off"]
            first = (
                ""
                if label.startswith("together")
                else (" (on first)" if row["index"] % 2 else " (off first)")
            )
            busy = (
                number(on.get("other_cpu_utilization"), 2)
                if label.startswith("together")
                else f"{number(on.get('other_cpu_utilization'), 2)}, "
                f"{number(off.get('other_cpu_utilization'), 2)}"
            )
            lines.append(
                f"| {label} {row['index']}{first} "
                f"| {number(on['messages_per_s'])} | {number(off['messages_per_s'])} "
                f"| {percent(row['throughput_cost'])} "
                f"| {number(on['server_cpu_us_per_message'], 2)} "
                f"| {number(off['server_cpu_us_per_message'], 2)} | {percent(row['cpu_cost'])} "
                f"| {busy} |"
            )
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -- main -----------------------------------------------------------------------------------------


def positive(kind: type[int] | type[float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(TARGETS), help="comma-separated")
    parser.add_argument("--workloads", default="echo,idle", help="comma-separated")
    parser.add_argument("--connections", type=positive(int), default=50)
    parser.add_argument("--inflight", type=positive(int), default=8)
    parser.add_argument("--size", type=positive(int), default=100, help="message bytes")
    parser.add_argument("--warmup", type=positive(float), default=2.0, help="seconds")
    parser.add_argument("--duration", type=positive(float), default=10.0, help="seconds")
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=10,
        help=f"turns of {METRICS_ON} and {METRICS_OFF} side by side",
    )
    parser.add_argument(
        "--slice", type=positive(float), default=2.0, help="seconds per turn and per window"
    )
    parser.add_argument(
        "--together",
        type=positive(int),
        default=10,
        help=f"windows of {METRICS_ON} and {METRICS_OFF} loaded together",
    )
    parser.add_argument("--idle", type=positive(int), default=2000, help="idle connections")
    parser.add_argument("--settle", type=positive(float), default=1.0, help="seconds")
    parser.add_argument("--connect-deadline", type=positive(float), default=60.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--markdown", type=Path, default=HERE / "results" / "metrics-latest.md")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    args.workloads = [name for name in args.workloads.split(",") if name]
    unknown = set(args.servers) - set(TARGETS) | set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown server or workload: {', '.join(sorted(unknown))}")
    if (
        args.duration > 600
        or args.slice > 60
        or max(args.rounds, args.together) > 100
        or args.idle > 50_000
    ):
        parser.error(
            "--duration is at most 600 s, --slice at most 60 s, --rounds and --together at "
            "most 100, --idle at most 50000"
        )
    return args


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pin and (os.cpu_count() or 1) > GENERATOR_CPU:
        os.sched_setaffinity(0, {GENERATOR_CPU})
    else:
        args.pin = False
    raise_fd_limit(args.idle + 2 * args.connections + 256)  # the servers inherit it
    started = dt.datetime.now(dt.UTC)
    results = []
    for name, workload in schedule(args):
        print(f"[bench] {name} {workload} ...", file=sys.stderr, flush=True)
        if name == "side by side":
            records = run_side_by_side(args)
        else:
            records = [run_one(TARGETS[name], workload, args)]
        for record in records:
            results.append(record)
            print(json.dumps(record), flush=True)
    overhead = metrics_overhead(results)
    if overhead is not None:
        summary = {
            phase: {key: value for key, value in costs.items() if key != "rows"}
            for phase, costs in overhead.items()
        }
        print(json.dumps({"metrics_overhead": summary}), flush=True)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(results, args, started))
    print(f"[bench] wrote {args.markdown}", file=sys.stderr)
    return 1 if any("error" in record for record in results) else 0


if __name__ == "__main__":
    sys.exit(main())
