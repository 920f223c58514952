"""Pushing from a worker with only Redis into a 1,000-member room: ``socketspec.Emitter``
beside python-socketio's write-only ``AsyncRedisManager``, measured in the same run.

    make bench-emitter
    .venv/bin/python bench/emitter.py [--runs 1] [--members 1000] [--messages 2000]
        [--size 100] [--servers socketspec,python-socketio] [--out DIR] [--smoke]

Each run of each server kind (interleaved: run 1 of both, then run 2, ...) starts afresh:
a ``redis-server`` on a free port of 127.0.0.1 with nothing on disk (bench/nodes.py's), and
one server using it: ``socketspec-cluster bench_app:socket --workers 1 --redis URL``, or
bench/peers/socketio_app.py ``--redis URL`` (an ``AsyncServer`` whose client manager is an
``AsyncRedisManager``) from the peer's own environment. ``--members`` connections join the
room ``hall``. Then the worker, bench/emitter_worker.py, a separate process with only the
Redis URL (socketspec's from this environment, python-socketio's from the peer's), sends one
message, which every member must receive (bounded wait), then ``--messages`` ``said``
messages to ``hall``, each awaited before the next.

Reported per run: messages/s into the room (messages over the time from the worker's start
line to the last member's last message), deliveries/s (that times the members), the
worker's own publishing rate, and missing or extra deliveries (every member must receive
every message exactly once). Nothing is pinned: the server, redis-server, the worker and
this process share the machine.

Output: one JSON line per run on stdout; bench/results/emitter-<date>.json and .md and
bench/results/emitter-latest.md (medians over the runs). ``--smoke``: one small run of
socketspec only, written as emitter-smoke-<date>.* only. Only 127.0.0.1; every loop is
bounded by count and time; every process started is stopped, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
import venvs
from generator import DIALECTS, SAID, SOCKETIO, SOCKETSPEC, Stats, close_clients, open_clients
from nodes import Redis, node_command, redis_binary, start_redis
from run import machine, positive, raise_fd_limit
from servers import Server, ServerError, source_revision, start_server
from workloads import wait_until

HERE = Path(__file__).resolve().parent
SERVERS = ("socketspec", "python-socketio")
PEER = "python-socketio"
WORKER = HERE / "emitter_worker.py"
LINK_TIMEOUT = 15.0  # seconds for the warm-up message to reach every member
WORKER_BOOT_TIMEOUT = 30.0
MEASURES = (
    ("messages_per_s", "messages/s into the room, more is better"),
    ("deliveries_per_s", "deliveries/s, more is better"),
    ("publishes_per_s", "the worker's publishes/s, more is better"),
)


def worker_python(kind: str) -> str:
    return sys.executable if kind == "socketspec" else str(venvs.ensure(PEER))


async def push_into_room(
    kind: str, server: Server, redis: Redis, args: argparse.Namespace
) -> dict[str, Any]:
    dialect = DIALECTS[SOCKETSPEC if kind == "socketspec" else SOCKETIO]
    path = dialect.path or server.path
    stats = Stats()
    members, failed = await open_clients(
        args.members, server.port, path, dialect, stats, mode=SAID, join=True
    )
    result: dict[str, Any] = {"members": len(members), "failed_members": failed}
    worker = await asyncio.create_subprocess_exec(
        worker_python(kind),
        str(WORKER),
        kind,
        redis.url,
        str(args.messages),
        str(args.size),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        linked = await wait_until(
            lambda: all(m.count >= 1 or m.lost.done() for m in members), WORKER_BOOT_TIMEOUT
        )
        if not linked or not members:
            reached = sum(1 for m in members if m.count >= 1)
            return {**result, "error": f"the warm-up reached {reached} of {len(members)}"}
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
        line = await asyncio.wait_for(worker.stdout.readline(), LINK_TIMEOUT)
        started = float(line.split()[1])
        wanted = 1 + args.messages
        drained = await wait_until(
            lambda: all(m.count >= wanted or m.lost.done() for m in members),
            args.drain_timeout,
            step=0.002,
        )
        finished = time.time()
        summary = json.loads(await asyncio.wait_for(worker.stdout.readline(), LINK_TIMEOUT))
        await asyncio.sleep(0.5)  # anything beyond ``wanted`` would be a duplicate
        elapsed = finished - started
        messages_per_s = args.messages / elapsed if elapsed > 0 else 0.0
        result.update(
            drained=drained,
            seconds=round(elapsed, 3),
            messages=args.messages,
            messages_per_s=round(messages_per_s, 1),
            deliveries_per_s=round(messages_per_s * len(members), 1),
            publishes_per_s=round(args.messages / summary["publish_seconds"], 1),
            missing_deliveries=sum(max(0, wanted - m.count) for m in members),
            extra_deliveries=sum(max(0, m.count - wanted) for m in members),
        )
        return result
    finally:
        if worker.returncode is None:
            worker.kill()
        _, errors = await worker.communicate()
        if worker.returncode not in (0, -9):
            result["worker_stderr"] = errors.decode(errors="replace")[-2000:]
        await close_clients(members)


def run_one(kind: str, run: int, args: argparse.Namespace) -> dict[str, Any]:
    record: dict[str, Any] = {"workload": "emitter", "server": kind, "run": run}
    redis: Redis | None = None
    server: Server | None = None
    try:
        redis = start_redis(None)
        argv, cwd = node_command(kind, redis.url)
        server = start_server(f"emitter-{kind}", argv, cwd=cwd, expect_metrics=False)
        record.update(uvloop.run(push_into_room(kind, server, redis, args)))
    except (ServerError, venvs.VenvError) as exc:
        record["error"] = str(exc)
    except Exception as exc:  # one failed run is recorded; the others go on
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if server is not None:
            record["server_exit"] = server.stop()
        if redis is not None:
            redis.stop()
            redis.remove()
    return record


def results_markdown(meta: dict[str, Any], records: list[dict[str, Any]]) -> str:
    servers: list[str] = meta["servers"]
    medians: dict[str, dict[str, float | None]] = {}
    for name in servers:
        good = [r for r in records if r["server"] == name and "error" not in r]
        medians[name] = {
            metric: statistics.median(r[metric] for r in good) if good else None
            for metric, _ in MEASURES
        }
    lines = [
        f"# Emitter into a {meta['members']}-member room ({meta['started']})",
        "",
        f"{meta['messages']} messages of about {meta['size']} bytes from a worker process "
        "with only Redis, each awaited before the next; one server process (socketspec: one "
        f"shard) and redis-server; medians of {meta['runs']} run(s); nothing pinned.",
        "",
        "| measure | "
        + " | ".join(servers)
        + (" | socketspec ÷ python-socketio |" if len(servers) == 2 else " |"),
        "|---|" + "---:|" * (len(servers) + (1 if len(servers) == 2 else 0)),
    ]
    for metric, label in MEASURES:
        values = [medians[name][metric] for name in servers]
        cells = ["—" if v is None else f"{v:,.1f}" if v < 100 else f"{v:,.0f}" for v in values]
        if len(servers) == 2:
            a, b = values
            cells.append("—" if not a or not b else f"{a / b:.2f}×")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Missing / extra deliveries per run: "
        + ", ".join(
            f"{r['server']} run {r['run']}: "
            + (
                f"error {r['error']}"
                if "error" in r
                else f"{r['missing_deliveries']} / {r['extra_deliveries']}"
            )
            for r in records
        ),
        "",
        f"Machine: {meta['machine'].get('cpu', '?')}, {meta['machine'].get('cores', '?')} "
        f"cores; socketspec {meta['socketspec_source']}; command `{meta['command']}`.",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive(int), default=1)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--members", type=positive(int), default=1000)
    parser.add_argument("--messages", type=positive(int), default=2000)
    parser.add_argument("--size", type=positive(int), default=100)
    parser.add_argument("--drain-timeout", type=positive(float), default=120.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--smoke", action="store_true", help="one small socketspec run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.servers, args.members, args.messages = 1, "socketspec", 20, 50
        args.drain_timeout = 20.0
    args.servers = [name for name in args.servers.split(",") if name]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        parser.error(f"--servers: from {', '.join(SERVERS)}, got {unknown or 'none'}")
    if args.runs > 20 or args.members > 10_000 or args.messages > 1_000_000:
        parser.error("at most: --runs 20, --members 10000, --messages 1000000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if redis_binary() is None:
        print("[emitter] redis-server not found: apt-get install redis-server", file=sys.stderr)
        return 2
    raise_fd_limit(args.members + 1024)
    started = dt.datetime.now(dt.UTC)
    if PEER in args.servers:  # before anything is timed: the first install takes a while
        try:
            venvs.ensure(PEER)
        except venvs.VenvError as exc:
            print(f"[emitter] {exc}", file=sys.stderr)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["bench/emitter.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke,
        "socketspec_source": source_revision(),
        "machine": machine(),
        "runs": args.runs,
        "servers": args.servers,
        "members": args.members,
        "messages": args.messages,
        "size": args.size,
    }
    records = []
    steps = [(name, run) for run in range(1, args.runs + 1) for name in args.servers]
    for index, (name, run) in enumerate(steps, 1):
        print(f"[emitter] {index}/{len(steps)} run {run}: {name}", file=sys.stderr, flush=True)
        record = run_one(name, run, args)
        records.append(record)
        print(json.dumps(record), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "emitter-" + ("smoke-" if args.smoke else "")
    stem += meta["started"][:16].replace(":", "").replace("T", "-")
    (args.out / f"{stem}.json").write_text(
        json.dumps({**meta, "records": records}, indent=1) + "\n"
    )
    text = results_markdown(meta, records)
    (args.out / f"{stem}.md").write_text(text)
    if not args.smoke:
        (args.out / "emitter-latest.md").write_text(text)
    print(text)
    failed = any(
        "error" in r or r.get("missing_deliveries") or r.get("extra_deliveries") for r in records
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
