"""Echo throughput and idle memory of one server process: socketspec beside websockets.

    make bench
    .venv/bin/python bench/echo.py [--duration 10] [--idle 2000] [--servers websockets,socketspec]

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

Servers: ``websockets`` (bench/peers/websockets_echo.py, the websockets library on
uvloop with orjson), ``socketspec`` (socketspec-cluster serving bench/apps/echo_app.py)
and ``socketspec-echo`` (socketspec-cluster --echo: transport only, no JSON, no app).
One JSON line per server per workload on stdout; a markdown table in
bench/results/latest.md. Every loop is bounded by count and time; only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvloop
from loadgen import Stats, close_clients, echo_message, open_clients
from servers import (
    BIN,
    REPO,
    Server,
    ServerError,
    machine_busy_seconds,
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


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    argv: list[str]
    cwd: Path
    expect_greeting: bool


TARGETS = {
    "websockets": Target(
        "websockets",
        f"websockets {version('websockets')} (bench/peers/websockets_echo.py)",
        [sys.executable, str(HERE / "peers" / "websockets_echo.py"), "--port", "0"],
        REPO,
        expect_greeting=False,
    ),
    "socketspec": Target(
        "socketspec",
        "socketspec-cluster echo_app:socket (bench/apps/echo_app.py)",
        [str(BIN / "socketspec-cluster"), "echo_app:socket", "--port", "0"],
        HERE / "apps",
        expect_greeting=True,
    ),
    "socketspec-echo": Target(
        "socketspec-echo",
        "socketspec-cluster --echo (transport only: no JSON, no app)",
        [str(BIN / "socketspec-cluster"), "--echo", "--port", "0"],
        REPO,
        expect_greeting=False,
    ),
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
    try:
        for client in clients:
            client.start_pumping(args.inflight)
        await asyncio.sleep(args.warmup)
        echoes0, cpu0, gen0, busy0, wall0 = snapshot(stats, server)
        await asyncio.sleep(args.duration)
        echoes1, cpu1, gen1, busy1, wall1 = snapshot(stats, server)
        drained = await stop_all(clients, timeout=10.0)
    finally:
        await close_clients(clients)
    messages = echoes1 - echoes0
    elapsed = wall1 - wall0
    server_cpu = cpu1 - cpu0
    result.update(
        seconds=round(elapsed, 3),
        messages=messages,
        messages_per_s=round(messages / elapsed) if elapsed > 0 else 0,
        server_cpu_s=round(server_cpu, 3),
        server_cpu_us_per_message=round(server_cpu / messages * 1e6, 2) if messages else None,
        server_cpu_utilization=round(server_cpu / elapsed, 3) if elapsed > 0 else None,
        generator_cpu_utilization=round((gen1 - gen0) / elapsed, 3) if elapsed > 0 else None,
        # Busy CPU of everything else on the machine (other processes, the kernel's own
        # threads): more than a few percent means the numbers are disturbed.
        other_cpu_utilization=(
            round(max(0.0, (busy1 - busy0) - server_cpu - (gen1 - gen0)) / elapsed, 3)
            if elapsed > 0
            else None
        ),
        drained=drained,
        other_messages=stats.other_messages,
        server_closes=stats.server_closes,
        close_codes={str(code): n for code, n in stats.close_codes.items()},
        errors=stats.errors,
    )
    return result


def snapshot(stats: Stats, server: Server) -> tuple[int, float, float, float, float]:
    return (
        stats.echoes,
        tree_cpu_seconds(server.pid),
        time.process_time(),
        machine_busy_seconds(),
        time.perf_counter(),
    )


async def stop_all(clients: list[Any], timeout: float) -> bool:
    """Stop sending; wait (bounded) for the messages in flight. True if all came back."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = len(clients)

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


def run_one(target: Target, workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server process for one workload; stopped afterwards whatever happens."""
    record: dict[str, Any] = {"server": target.name, "workload": workload}
    try:
        server = start_server(
            target.name, target.argv, cwd=target.cwd, cpu=SERVER_CPU if args.pin else None
        )
    except ServerError as exc:
        return {**record, "error": str(exc)}
    try:
        record.update(uvloop.run(WORKLOADS[workload](server, target, args)))
    finally:
        code = server.stop()
    record["server_exit"] = code
    if code not in (0, None):
        record["server_log"] = server.log_tail(5)
    return record


# -- report ---------------------------------------------------------------------------------------


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace, started: dt.datetime) -> str:
    by = {(r["server"], r["workload"]): r for r in results}
    base_echo = by.get((BASELINE, "echo"), {})
    base_idle = by.get((BASELINE, "idle"), {})
    lines = [
        "# Echo benchmark",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC; `make bench` (bench/echo.py). One server at a time "
        "(socketspec: its supervisor and one shard), "
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
        f"measured. Idle: {args.idle} connections opened after {WARM_CONNECTIONS} warm-up "
        "ones; server tree VmRSS growth per connection. Ratios are to the websockets library.",
        "",
        "| server | messages/s | ratio | server µs CPU / message | ratio "
        "| KiB / idle connection | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in args.servers:
        echo = by.get((name, "echo"), {})
        idle = by.get((name, "idle"), {})
        rate, cpu, kib = (
            echo.get("messages_per_s"),
            echo.get("server_cpu_us_per_message"),
            idle.get("kib_per_connection"),
        )
        lines.append(
            f"| {name} | {number(rate)} | {ratio(rate, base_echo.get('messages_per_s'))} "
            f"| {number(cpu, 1)} | {ratio(cpu, base_echo.get('server_cpu_us_per_message'))} "
            f"| {number(kib, 1)} | {ratio(kib, base_idle.get('kib_per_connection'))} |"
        )
    lines += [
        "",
        "| server | server CPU busy | generator CPU busy | rest of the machine busy "
        "| RSS before → after idle (KiB) | failures |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in args.servers:
        echo = by.get((name, "echo"), {})
        idle = by.get((name, "idle"), {})
        problems = [
            f"{workload}: {value}"
            for workload, record in (("echo", echo), ("idle", idle))
            for key in ("error", "failed_connections", "server_closes", "drained", "errors")
            if (value := record.get(key)) not in (None, 0, [], True)
        ]
        lines.append(
            f"| {name} | {number(echo.get('server_cpu_utilization'), 2)} "
            f"| {number(echo.get('generator_cpu_utilization'), 2)} "
            f"| {number(echo.get('other_cpu_utilization'), 2)} "
            f"| {number(idle.get('rss_before_kib'))} → {number(idle.get('rss_after_kib'))} "
            f"| {'; '.join(problems) or 'none'} |"
        )
    lines += [
        "",
        "Servers: " + "; ".join(f"`{n}`: {TARGETS[n].description}" for n in args.servers) + ".",
        f"Versions: socketspec {version('socketspec')}, websockets {version('websockets')}, "
        f"wsproto {version('wsproto')}, uvloop {version('uvloop')}, orjson {version('orjson')}.",
        "",
        "CPU busy is in cores over the measured echo window. A server near 1.00 was "
        "saturated (messages/s is then its capacity); a generator near 1.00 would mean the "
        'generator set the pace. "Rest of the machine" is all other busy CPU (/proc/stat, '
        "less the server and the generator), the kernel's loopback work included: well above "
        "its usual level, other processes were competing and the run is noisy.",
        "",
    ]
    return "\n".join(lines)


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
    parser.add_argument("--idle", type=positive(int), default=2000, help="idle connections")
    parser.add_argument("--settle", type=positive(float), default=1.0, help="seconds")
    parser.add_argument("--connect-deadline", type=positive(float), default=60.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--markdown", type=Path, default=HERE / "results" / "latest.md")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    args.workloads = [name for name in args.workloads.split(",") if name]
    unknown = set(args.servers) - set(TARGETS) | set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown server or workload: {', '.join(sorted(unknown))}")
    if args.duration > 600 or args.idle > 50_000:
        parser.error("--duration is at most 600 s and --idle at most 50000")
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
    raise_fd_limit(args.idle + args.connections + 256)  # the servers inherit it
    started = dt.datetime.now(dt.UTC)
    results = []
    for name in args.servers:
        for workload in args.workloads:
            print(f"[bench] {name} {workload} ...", file=sys.stderr, flush=True)
            record = run_one(TARGETS[name], workload, args)
            results.append(record)
            print(json.dumps(record), flush=True)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown(results, args, started))
    print(f"[bench] wrote {args.markdown}", file=sys.stderr)
    return 1 if any("error" in record for record in results) else 0


if __name__ == "__main__":
    sys.exit(main())
