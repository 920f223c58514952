"""The benchmark harness: socketspec beside picows, python-socketio, websockets and
FastAPI, and above the floor of a bare uvloop protocol.

    make bench
    .venv/bin/python bench/run.py [--runs 3] [--duration 5] [--servers a,b] [--workloads a,b]
        [--shards 1,2] [--members 1000] [--idle 5000] [--no-charts] [--no-pin] [--smoke]

Servers (each a fresh process per run of a workload, serving the same three events:
``echo``, ``join`` with an ack, ``shout`` broadcast to the room ``hall`` as ``said``):

- ``socketspec``: ``socketspec-cluster bench_app:socket --workers 1 --port 0
  --metrics-port 0`` from bench/apps (bench/apps/bench_app.py);
- ``picows``: picows (Cython), a ``WSListener`` per connection, ``WSTransport.send`` to
  each member (bench/peers/picows_app.py);
- ``websockets``: the websockets library with ``websockets.broadcast()``
  (bench/peers/websockets_app.py);
- ``python-socketio``: an ``AsyncServer`` on uvicorn (bench/peers/socketio_app.py);
- ``fastapi``: a FastAPI WebSocket endpoint on uvicorn with rooms kept by hand
  (bench/peers/fastapi_app.py);
- ``bare``: the floor, not a product: a bare uvloop ``asyncio.Protocol`` with its own
  minimal upgrade and frame parser, orjson, the same envelope as the websockets peer
  (bench/peers/bare_app.py); reported as "bare uvloop (floor)".

Each peer runs from its own virtual environment under .cache/bench/<peer>/, installed
from PyPI on first use with the pins of bench/peers/requirements-<peer>.txt
(bench/venvs.py); what was installed is recorded in the results.

Workloads (bench/workloads.py): ``echo``, ``latency``, ``broadcast``, ``fanout``,
``idle`` on every server, and ``shards`` (socketspec only: the paced room broadcast on
``--shards`` clusters, 1 and 2 shards). The server runs on core 0 and this process, the
load generator, on core 1 (taskset, sched_setaffinity), except clusters of more than one
shard, which run on every core. Runs are interleaved (run 1 of every workload and
server, then run 2, ...) so that a slow spell of the machine hits them all alike.

``capacity`` (bench/capacity.py), only when named in ``--workloads``: one room of
``--levels`` members (10,000, 50,000 and 100,000), a fresh cluster of
``--capacity-shards`` shards each (more where the descriptor limit needs them), opened by
several generator processes from their own loopback addresses; connect rate, memory per
connection with the kernel's, and ``--broadcasts`` broadcasts to every member, one at a
time. Nothing pinned. Its results go to bench/results/capacity-latest.md and their own
part of docs/performance.md when it runs alone.

Output: one JSON line per run on stdout; bench/results/<date>.json (every run, raw, and
the medians), bench/results/<date>.md and bench/results/latest.md (medians over the runs
with ratios to each peer), the charts docs/perf-*.png (matplotlib, the project's
``bench`` extra) and the results part of docs/performance.md (between its markers).
``--smoke`` runs every workload once, small and short, against socketspec only, and
writes only bench/results (or ``--out``) files named smoke-<date>.*: what the tests run.
Every loop is bounded by count and time; only 127.0.0.1; every server started is
stopped, also on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import signal
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import capacity
import report
import uvloop
import venvs
from generator import DIALECTS, JSON, SOCKETIO, SOCKETSPEC
from servers import (
    BIN,
    REPO,
    ServerError,
    descendants,
    machine_busy_seconds,
    pin_prefix,
    source_revision,
    start_server,
)
from workloads import WORKLOADS, Options, shards

HERE = Path(__file__).resolve().parent
SERVER_CPU = 0
GENERATOR_CPU = 1
SERVERS = ("socketspec", "picows", "websockets", "python-socketio", "fastapi", "bare")
PEER_SCRIPTS = {
    "picows": "picows_app.py",
    "websockets": "websockets_app.py",
    "python-socketio": "socketio_app.py",
    "fastapi": "fastapi_app.py",
    "bare": "bare_app.py",
}
ALL_WORKLOADS = (*WORKLOADS, "shards")
EXTRA_WORKLOADS = ("capacity",)  # asked for by name only: minutes, and every core
CLEAN_EXITS = (0, None, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled


@dataclass(frozen=True)
class Target:
    name: str
    argv: list[str]
    cwd: Path
    dialect: str


def target(name: str, workers: int = 1) -> Target:
    if name == "socketspec":
        return Target(
            name,
            [
                str(BIN / "socketspec-cluster"),
                "bench_app:socket",
                "--workers",
                str(workers),
                "--port",
                "0",
                "--metrics-port",
                "0",
            ],
            HERE / "apps",
            SOCKETSPEC,
        )
    python = venvs.ensure(name)
    return Target(
        name,
        [str(python), str(HERE / "peers" / PEER_SCRIPTS[name]), "--port", "0"],
        HERE,
        SOCKETIO if name == "python-socketio" else JSON,
    )


# -- one run --------------------------------------------------------------------------------------


def wait_for_quiet(seconds: float, threshold: float = 0.3, step: float = 0.5) -> float:
    """Wait (at most ``seconds``) until the machine is less busy than ``threshold`` cores
    over ``step``; returns the last measured busy cores."""
    if seconds <= 0:
        return 0.0
    stop_at = time.monotonic() + seconds
    while True:
        busy0, wall0 = machine_busy_seconds(), time.perf_counter()
        time.sleep(step)
        busy = (machine_busy_seconds() - busy0) / (time.perf_counter() - wall0)
        if busy < threshold or time.monotonic() > stop_at:
            return round(busy, 3)


def run_one(
    name: str, workload: str, workers: int, run: int, options: Options, args: argparse.Namespace
) -> dict[str, Any]:
    """A fresh server for one run of one workload; stopped afterwards whatever happens."""
    record: dict[str, Any] = {"workload": workload, "server": name, "run": run}
    if workload == "shards":
        record["shards"] = workers
    try:
        spec = target(name, workers)
    except venvs.VenvError as exc:
        return {**record, "error": f"environment: {exc}"}
    pinned = args.pin and workers == 1
    record["server_cores"] = [SERVER_CPU] if pinned else "all"
    record["generator_cores"] = [GENERATOR_CPU] if args.pin else "all"
    record["machine_busy_before"] = wait_for_quiet(args.quiet_wait)
    argv = spec.argv
    if pinned:
        argv = [*pin_prefix(SERVER_CPU), *argv]
    # Started before this process pins itself: an unpinned server may use every core.
    everywhere = os.sched_getaffinity(0)
    try:
        server = start_server(f"{name}-{workload}", argv, cwd=spec.cwd)
    except ServerError as exc:
        return {**record, "error": str(exc)}
    try:
        if pinned and not pin_prefix(SERVER_CPU):
            for pid in descendants(server.pid):  # no taskset: pin the tree from here
                os.sched_setaffinity(pid, {SERVER_CPU})
        dialect = DIALECTS[spec.dialect]
        if dialect.path:
            server.path = dialect.path
        record["server_processes"] = len(descendants(server.pid))
        if args.pin:
            os.sched_setaffinity(0, {GENERATOR_CPU})
        work = shards(workers) if workload == "shards" else WORKLOADS[workload]
        record.update(uvloop.run(work(server, dialect, options)))
    except Exception as exc:  # one failed run is recorded; the others go on
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        os.sched_setaffinity(0, everywhere)
        code = server.stop()
    record["server_exit"] = code
    if code not in CLEAN_EXITS or "error" in record:
        record["server_log"] = server.log_tail(10)
    return record


def run_capacity(run: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every level of the capacity workload: one record each (bench/capacity.py)."""
    wait_for_quiet(args.quiet_wait)
    options = capacity.CapacityOptions(
        levels=tuple(args.levels),
        shards=args.capacity_shards,
        broadcasts=args.broadcasts,
        size=args.size,
    )
    extra = {"run": run, "server_cores": "all", "generator_cores": "all"}
    try:
        return uvloop.run(capacity.run(options, extra))
    except Exception as exc:  # recorded; the other workloads go on
        record = {
            "workload": "capacity",
            "server": "socketspec",
            "level": 0,
            **extra,
            "error": f"{type(exc).__name__}: {exc}",
        }
        print(json.dumps(record), flush=True)
        return [record]


def plan(args: argparse.Namespace) -> list[tuple[str, str, int, int]]:
    """(server, workload, shards, run) in order: runs interleaved."""
    steps = []
    for run in range(1, args.runs + 1):
        for workload in args.workloads:
            if workload == "capacity":
                if "socketspec" in args.servers:
                    steps.append(("socketspec", workload, args.capacity_shards, run))
                continue
            if workload == "shards":
                if "socketspec" in args.servers:
                    steps += [("socketspec", workload, n, run) for n in args.shards]
                continue
            steps += [(name, workload, 1, run) for name in args.servers]
    return steps


# -- about the machine ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    state: dict[str, Any] = {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                state["cpu"] = line.split(":", 1)[1].strip()
                break
        state["load_average"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                state["memory_mib"] = int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return state


def versions(servers: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "socketspec": {
            name: version(name) for name in ("socketspec", "uvloop", "orjson", "wsproto", "h11")
        },
        "generator": {"python": platform.python_version(), "uvloop": version("uvloop")},
    }
    for name in servers:
        if name in venvs.PEERS:
            found[name] = dict(line.split("==", 1) for line in venvs.frozen(name) if "==" in line)
    return found


# -- main -----------------------------------------------------------------------------------------


def positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive(int), default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument(
        "--workloads",
        help=f"comma-separated (default: {','.join(ALL_WORKLOADS)}; the smoke run adds capacity)",
    )
    parser.add_argument("--shards", default="1,2", help="shard counts of the shards workload")
    parser.add_argument("--duration", type=positive(float), default=defaults.duration)
    parser.add_argument("--warmup", type=positive(float), default=defaults.warmup)
    parser.add_argument("--size", type=positive(int), default=defaults.size)
    parser.add_argument("--connections", type=positive(int), default=defaults.connections)
    parser.add_argument("--inflight", type=positive(int), default=defaults.inflight)
    parser.add_argument("--members", type=positive(int), default=defaults.members)
    parser.add_argument("--window", type=positive(int), default=defaults.window)
    parser.add_argument("--rate", type=positive(float), default=defaults.rate)
    parser.add_argument("--idle", type=positive(int), default=defaults.idle)
    parser.add_argument(
        "--levels",
        default=",".join(str(n) for n in capacity.LEVELS),
        help="room members at each level of the capacity workload, comma-separated",
    )
    parser.add_argument(
        "--capacity-shards", type=positive(int), default=capacity.CapacityOptions.shards
    )
    parser.add_argument(
        "--broadcasts",
        type=positive(int),
        default=capacity.CapacityOptions.broadcasts,
        help="broadcasts to every member at each level of the capacity workload",
    )
    parser.add_argument("--quiet-wait", type=float, default=3.0, help="seconds, before each run")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--no-charts", dest="charts", action="store_false")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="every workload once, small and short, socketspec only; no docs, no charts",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.servers, args.charts = 1, "socketspec", False
        args.duration, args.warmup, args.quiet_wait = 0.5, 0.3, 0.0
        args.connections, args.inflight, args.members, args.idle = 5, 2, 50, 100
        args.levels = ",".join(str(n) for n in capacity.SMOKE_LEVELS)
        args.broadcasts = 2
    if args.workloads is None:
        args.workloads = ",".join(
            (*ALL_WORKLOADS, *EXTRA_WORKLOADS) if args.smoke else ALL_WORKLOADS
        )
    args.servers = [name for name in args.servers.split(",") if name]
    args.workloads = [name for name in args.workloads.split(",") if name]
    known = {*ALL_WORKLOADS, *EXTRA_WORKLOADS}
    unknown = set(args.servers) - set(SERVERS) | set(args.workloads) - known
    if unknown:
        parser.error(f"unknown server or workload: {', '.join(sorted(unknown))}")
    try:
        args.levels = [int(n) for n in args.levels.split(",") if n]
    except ValueError:
        parser.error(f"--levels: comma-separated integers, got {args.levels!r}")
    if not args.levels or any(not 1 <= n <= 200_000 for n in args.levels):
        parser.error("--levels: from 1 to 200000 members each")
    if args.capacity_shards > 16 or args.broadcasts > 100:
        parser.error("at most: --capacity-shards 16, --broadcasts 100")
    try:
        args.shards = [int(n) for n in args.shards.split(",") if n]
    except ValueError:
        parser.error(f"--shards: comma-separated integers, got {args.shards!r}")
    if any(not 1 <= n <= 16 for n in args.shards):
        parser.error("--shards: from 1 to 16")
    if (
        args.runs > 20
        or args.duration > 120
        or args.warmup > 30
        or args.members > 10_000
        or args.idle > 15_000
        or args.connections > 1000
    ):
        # Beyond that a silent member would meet socketspec's idle timeout (300 s), or
        # the connections would not fit the machine's file descriptors.
        parser.error(
            "at most: --runs 20, --duration 120, --warmup 30, --members 10000, --idle 15000, "
            "--connections 1000"
        )
    if (os.cpu_count() or 1) <= GENERATOR_CPU:
        args.pin = False
    return args


def options_of(args: argparse.Namespace) -> Options:
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        size=args.size,
        connections=args.connections,
        inflight=args.inflight,
        members=args.members,
        window=args.window,
        rate=args.rate,
        idle=args.idle,
    )
    if args.smoke:
        options = dataclasses.replace(options, settle=0.3, drain_timeout=5.0)
    return options


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_of(args)
    # This process holds every connection, the servers their side of each (they inherit it).
    raise_fd_limit(max(args.idle, args.members) + args.connections + 1024)
    started = dt.datetime.now(dt.UTC)
    for name in args.servers:  # before anything is timed: the first install takes a while
        if name in venvs.PEERS:
            try:
                venvs.ensure(name)
            except venvs.VenvError as exc:
                print(f"[bench] {exc}", file=sys.stderr)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke,
        "socketspec_source": source_revision(),
        "machine": machine(),
        "versions": versions(args.servers),
        "options": dataclasses.asdict(options),
        "runs": args.runs,
        "servers": args.servers,
        "workloads": args.workloads,
        "shards": args.shards,
        "pinned": {"server": SERVER_CPU, "generator": GENERATOR_CPU} if args.pin else None,
        "descriptions": {name: target_description(name) for name in args.servers},
    }
    records = []
    steps = plan(args)
    for index, (name, workload, workers, run) in enumerate(steps, 1):
        label = f"{workload} {name}" + (f" {workers} shard(s)" if workload == "shards" else "")
        print(f"[bench] {index}/{len(steps)} run {run}: {label} ...", file=sys.stderr, flush=True)
        if workload == "capacity":
            records += run_capacity(run, args)  # prints a line per level as it goes
            continue
        record = run_one(name, workload, workers, run, options, args)
        records.append(record)
        print(json.dumps(record), flush=True)
    meta["capacity_notes"] = sorted(
        {str(record["shards_reason"]) for record in records if record.get("shards_reason")}
    )
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    written = report.write(meta, records, args.out, args.docs, smoke=args.smoke, charts=args.charts)
    for path in written:
        print(f"[bench] wrote {path}", file=sys.stderr)
    return 1 if any("error" in record for record in records) else 0


def target_description(name: str) -> str:
    if name == "socketspec":
        return (
            "socketspec-cluster bench_app:socket --workers N --metrics-port 0 "
            "(bench/apps/bench_app.py)"
        )
    return {
        "picows": "picows (Cython) with a WSListener per connection, WSTransport.send to each "
        "member of a shout serialised once, orjson, uvloop (bench/peers/picows_app.py)",
        "websockets": "websockets with websockets.broadcast(), orjson, uvloop "
        "(bench/peers/websockets_app.py)",
        "python-socketio": "python-socketio AsyncServer (ASGI) on uvicorn with uvloop "
        "(bench/peers/socketio_app.py)",
        "fastapi": "FastAPI WebSocket endpoint on uvicorn with uvloop, rooms by hand, "
        "send_json to each member in turn (bench/peers/fastapi_app.py)",
        "bare": "the floor: a bare uvloop asyncio.Protocol with its own minimal upgrade and "
        "frame parser, orjson, a shout framed once and written to every member "
        "(bench/peers/bare_app.py)",
    }[name]


if __name__ == "__main__":
    sys.exit(main())
