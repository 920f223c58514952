"""Room broadcast across two nodes through Redis: socketspec beside python-socketio's
``AsyncRedisManager``, measured in the same run.

    make bench-nodes
    .venv/bin/python bench/nodes.py [--runs 3] [--members 1000] [--duration 5] [--warmup 1]
        [--window 8] [--servers socketspec,python-socketio] [--no-pin] [--out DIR] [--smoke]

Each run of each server kind (interleaved: run 1 of both, then run 2, ...) starts afresh:

- a ``redis-server`` on a free port of 127.0.0.1 with nothing on disk (``--save ""
  --appendonly no --dir <an empty temporary directory>``, checked still empty afterwards);
- two server processes using it, node A and node B:
  - socketspec: each ``socketspec-cluster bench_app:socket --workers 1 --port 0
    --metrics-port 0 --redis redis://127.0.0.1:PORT/0`` (bench/apps/bench_app.py);
  - python-socketio: each bench/peers/socketio_app.py ``--redis URL``, an ``AsyncServer``
    with ``client_manager=socketio.AsyncRedisManager(URL)`` on uvicorn, from the peer's own
    environment (bench/peers/requirements-python-socketio.txt pins ``redis`` for it);
- ``--members`` connections to node B join the room ``hall`` (each waits for its ack); one
  more connection, to node A and not a member, shouts: every broadcast goes node A ->
  Redis -> node B -> every member. One broadcast first must reach every member (the nodes
  are linked; bounded wait); then the sender shouts as fast as accepted, at most
  ``--window`` broadcasts ahead of the slowest member (the pacing of bench/run.py's
  ``broadcast`` workload), ``--warmup`` then ``--duration`` seconds measured; afterwards
  every member must have received every broadcast exactly once (missing and extra
  deliveries are counted).

Reported per run: deliveries/s, broadcasts/s, delivery latency p50/p99 (the send time rides
in the payload; every 10th delivery of each member is timed on arrival), and server CPU
(user + system, /proc) over the measured window: node A's and node B's process trees plus
redis-server, per delivery, with each part (redis-server's share too) separately; Redis's
own count of PUBLISH calls per broadcast; socketspec's Redis counters from its /metrics.

Placement: node A, node B and redis-server share core 0, the load generator runs on core 1
(``--no-pin``: nothing pinned).

Output: one JSON line per run on stdout; bench/results/nodes-<date>.json (every run and the
medians), bench/results/nodes-<date>.md and bench/results/nodes-latest.md (medians over the
runs and socketspec ÷ python-socketio), and the table in docs/performance.md between its
``bench-nodes`` markers. ``--smoke``: one short, small run against socketspec only, written
as nodes-smoke-<date>.* and nothing else (what tests/bench runs). Only 127.0.0.1; every
loop is bounded by count and time; every process started is stopped, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import report
import uvloop
import venvs
from generator import (
    DIALECTS,
    SAID,
    SOCKETIO,
    SOCKETSPEC,
    Client,
    Dialect,
    Pacer,
    Stamper,
    Stats,
    close_clients,
    open_clients,
)
from run import (
    CLEAN_EXITS,
    GENERATOR_CPU,
    SERVER_CPU,
    machine,
    positive,
    raise_fd_limit,
    wait_for_quiet,
)
from servers import (
    BIN,
    REPO,
    Server,
    ServerError,
    descendants,
    machine_busy_seconds,
    pin_prefix,
    source_revision,
    start_server,
    tree_cpu_seconds,
)
from workloads import Options, Snapshot, measured, percentiles, wait_until

HERE = Path(__file__).resolve().parent
SERVERS = ("socketspec", "python-socketio")
PEER = "python-socketio"
WORKLOAD = "nodes"
PARTS = ("node_a", "node_b", "redis")
LINK_TIMEOUT = 15.0  # seconds for the first broadcast to reach every member
REDIS_READY_TIMEOUT = 10.0
REDIS_ATTEMPTS = 3  # a free port may be taken between finding it and redis binding it
METRICS_SETTLE = 1.2  # seconds: socketspec's shards fold their counters into /metrics every 1 s
BEGIN = "<!-- bench-nodes:begin -->"
END = "<!-- bench-nodes:end -->"
NODE_ID = re.compile(r"node ([0-9a-f]{8}) shares rooms")
KEPT_METRICS = ("socketspec_redis_", 'path="undelivered_remote"')

# (metric, label, digits or None for digits_for, higher is better or None: no ratio)
MEASURES: list[tuple[str, str, int | None, bool | None]] = [
    ("deliveries_per_s", "deliveries/s, more is better", None, True),
    ("broadcasts_per_s", "broadcasts/s, more is better", None, True),
    ("latency_p50_ms", "delivery latency p50 (ms), less is better", None, False),
    ("latency_p99_ms", "delivery latency p99 (ms), less is better", None, False),
    (
        "server_cpu_us_per_delivery",
        "server µs CPU / delivery (node A + node B + redis-server), less is better",
        None,
        False,
    ),
    ("node_a_cpu_us_per_delivery", "of which node A (the sender's), µs / delivery", None, False),
    ("node_b_cpu_us_per_delivery", "of which node B (the members'), µs / delivery", None, False),
    ("redis_cpu_us_per_delivery", "of which redis-server, µs / delivery", None, False),
    ("redis_cpu_share", "redis-server's share of the server CPU", None, None),
    ("server_cpu_utilization", "server CPU busy (cores; all three on core 0)", 2, None),
    ("generator_cpu_utilization", "generator CPU busy (cores)", 2, None),
    ("redis_publishes_per_broadcast", "Redis PUBLISH calls per broadcast", 2, None),
]


# -- redis-server ---------------------------------------------------------------------------------


@dataclass
class Redis:
    """A redis-server of this run: its process, port and the directory it may not write to."""

    process: subprocess.Popen[bytes]
    port: int
    base: Path  # holds data/ (redis's --dir) and redis.log
    files_on_disk: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def log_tail(self, lines: int = 10) -> str:
        try:
            text = (self.base / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (then SIGKILL); records what it left in its --dir, then removes it all."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        try:
            self.files_on_disk = sorted(path.name for path in self.data.iterdir())
        except OSError:
            self.files_on_disk = []
        return process.returncode

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_command(port: int, *words: str, timeout: float = 2.0) -> bytes:
    """One command in RESP; the reply's first line, or the whole of a bulk string."""
    request = f"*{len(words)}\r\n".encode() + b"".join(
        b"$%d\r\n%s\r\n" % (len(word.encode()), word.encode()) for word in words
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(request)
        reply = b""
        stop_at = time.monotonic() + timeout
        while time.monotonic() < stop_at:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
            head, sep, rest = reply.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$"):
                return head
            length = int(head[1:])
            if length < 0:
                return b""
            if len(rest) >= length:
                return rest[:length]
    raise OSError(f"redis on port {port}: no complete reply to {words[0]}")


def redis_info(port: int, section: str) -> dict[str, str]:
    text = redis_command(port, "INFO", section).decode(errors="replace")
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def start_redis(cpu: int | None) -> Redis:
    """A redis-server on a free port of 127.0.0.1, nothing on disk; waits until it PONGs."""
    binary = redis_binary()
    if binary is None:
        raise ServerError("redis-server not found (Debian's redis-server package)")
    last = ""
    for _ in range(REDIS_ATTEMPTS):
        port = free_port()
        base = Path(tempfile.mkdtemp(prefix="bench-nodes-redis-"))
        (base / "data").mkdir()
        argv = [
            *pin_prefix(cpu),
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(base / "data"),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "notice",
            "--logfile",
            "",
        ]
        with (base / "redis.log").open("wb") as log:
            process = subprocess.Popen(
                argv, cwd=base, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        if cpu is not None and not pin_prefix(cpu) and cpu < (os.cpu_count() or 1):
            os.sched_setaffinity(process.pid, {cpu})
        redis = Redis(process, port, base)
        stop_at = time.monotonic() + REDIS_READY_TIMEOUT
        while process.poll() is None and time.monotonic() < stop_at:
            try:
                if redis_command(port, "PING", timeout=1.0) == b"+PONG":
                    return redis
            except OSError:
                pass
            time.sleep(0.05)
        redis.stop()
        last = f"exit code {process.returncode}; log:\n{redis.log_tail()}"
        redis.remove()
    raise ServerError(f"redis-server did not answer PING ({REDIS_ATTEMPTS} attempts): {last}")


# -- the nodes ------------------------------------------------------------------------------------


def node_command(kind: str, url: str) -> tuple[list[str], Path]:
    if kind == "socketspec":
        argv = [
            str(BIN / "socketspec-cluster"),
            "bench_app:socket",
            "--workers",
            "1",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--redis",
            url,
        ]
        return argv, HERE / "apps"
    python = venvs.ensure(PEER)
    return [
        str(python),
        str(HERE / "peers" / "socketio_app.py"),
        "--port",
        "0",
        "--redis",
        url,
    ], HERE


def node_id(server: Server) -> str | None:
    for line in server.output:
        match = NODE_ID.search(line)
        if match:
            return match.group(1)
    return None


def scrape(server: Server) -> dict[str, float]:
    """socketspec's Redis counters (and undelivered remote broadcasts), non-zero ones."""
    if server.metrics_port is None:
        return {}
    url = f"http://127.0.0.1:{server.metrics_port}{server.metrics_path}"
    with urllib.request.urlopen(url, timeout=5) as response:  # 127.0.0.1 only
        text = response.read().decode(errors="replace")
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or "_bucket{" in line or not any(k in line for k in KEPT_METRICS):
            continue
        name, _, value = line.rpartition(" ")
        try:
            amount = float(value)
        except ValueError:
            continue
        if amount:
            found[name] = amount
    return found


# -- one run --------------------------------------------------------------------------------------


def cpu_parts(pids: dict[str, int]) -> dict[str, float]:
    return {part: tree_cpu_seconds(pid) for part, pid in pids.items()}


def take(stats: Stats, pids: dict[str, int], sent: int) -> tuple[Snapshot, dict[str, float]]:
    parts = cpu_parts(pids)
    snap = Snapshot(
        hot=stats.hot,
        sent=sent,
        server_cpu=sum(parts.values()),
        generator_cpu=time.process_time(),
        busy=machine_busy_seconds(),
        wall=time.perf_counter(),
    )
    return snap, parts


async def across(
    node_a: Server, node_b: Server, pids: dict[str, int], dialect: Dialect, options: Options
) -> dict[str, Any]:
    """Members on node B, the sender on node A; paced like the ``broadcast`` workload."""
    stats = Stats(sample_every=options.sample_every)
    opened_at = time.perf_counter()
    members, failed = await open_clients(
        options.members,
        node_b.port,
        node_b.path,
        dialect,
        stats,
        mode=SAID,
        join=True,
        deadline=options.connect_deadline,
    )
    result: dict[str, Any] = {
        "members": len(members),
        "failed_members": failed,
        "connect_and_join_s": round(time.perf_counter() - opened_at, 2),
    }
    senders, _ = await open_clients(
        1, node_a.port, node_a.path, dialect, stats, mode=SAID, first_index=options.members
    )
    if not senders or not members:
        await close_clients([*members, *senders])
        return {**result, "error": "no sender or no members", **stats.fields()}
    sender: Client = senders[0]
    stamper = Stamper(dialect, options.size)
    pacer: Pacer | None = None
    try:
        # One broadcast first: node A reaches every member on node B through Redis.
        assert sender.transport is not None
        linked_at = time.perf_counter()
        sender.transport.write(stamper.frame(time.perf_counter_ns()))
        linked = await wait_until(
            lambda: all(m.count >= 1 or m.lost.done() for m in members), LINK_TIMEOUT
        )
        result["first_broadcast_s"] = round(time.perf_counter() - linked_at, 3)
        if not linked:
            reached = sum(1 for m in members if m.count >= 1)
            return {
                **result,
                "error": f"the first broadcast from node A reached {reached} of "
                f"{len(members)} members on node B within {LINK_TIMEOUT:g} s",
                **stats.fields(),
            }
        pacer = Pacer(sender, members, options.window, stamper)
        pacer.sent = 1  # the first broadcast, which every member has
        pacer.start()
        await asyncio.sleep(options.warmup)
        stats.sampling = True
        before, parts_before = take(stats, pids, pacer.sent)
        await asyncio.sleep(options.duration)
        after, parts_after = take(stats, pids, pacer.sent)
        stats.sampling = False
        pacer.stop()
        sent = pacer.sent
        drained = await wait_until(
            lambda: all(m.count >= sent or m.lost.done() for m in members), options.drain_timeout
        )
        await asyncio.sleep(options.settle)  # anything beyond ``sent`` would be a duplicate
        lost = sum(1 for m in members if m.lost.done())
    finally:
        if pacer is not None:
            pacer.stop()
        await close_clients([*members, sender])
    elapsed = after.wall - before.wall
    broadcasts = after.sent - before.sent
    window = measured(before, after, "delivery", "deliveries")
    deliveries = window["deliveries"]
    server_cpu = after.server_cpu - before.server_cpu
    for part in PARTS:
        used = parts_after[part] - parts_before[part]
        window[f"{part}_cpu_s"] = round(used, 3)
        window[f"{part}_cpu_us_per_delivery"] = (
            round(used / deliveries * 1e6, 3) if deliveries else None
        )
    window["redis_cpu_share"] = (
        round(window["redis_cpu_s"] / server_cpu, 3) if server_cpu > 0 else None
    )
    result.update(
        window,
        broadcasts=broadcasts,
        broadcasts_per_s=round(broadcasts / elapsed, 1) if elapsed > 0 else 0,
        window=options.window,
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


def run_one(kind: str, run: int, options: Options, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh redis-server and two fresh nodes for one run; all stopped whatever happens."""
    record: dict[str, Any] = {"workload": WORKLOAD, "server": kind, "run": run}
    cpu = SERVER_CPU if args.pin else None
    record["server_cores"] = [SERVER_CPU] if args.pin else "all"
    record["generator_cores"] = [GENERATOR_CPU] if args.pin else "all"
    record["machine_busy_before"] = wait_for_quiet(args.quiet_wait)
    everywhere = os.sched_getaffinity(0)
    redis: Redis | None = None
    nodes: list[Server] = []
    try:
        redis = start_redis(cpu)
        record["redis_port"] = redis.port
        for label in ("a", "b"):
            argv, cwd = node_command(kind, redis.url)
            nodes.append(
                start_server(
                    f"nodes-{kind}-{label}",
                    argv,
                    cwd=cwd,
                    cpu=cpu,
                    expect_metrics=kind == "socketspec",
                )
            )
        node_a, node_b = nodes
        dialect = DIALECTS[SOCKETSPEC if kind == "socketspec" else SOCKETIO]
        for node in nodes:
            if dialect.path:
                node.path = dialect.path
        record["node_processes"] = [len(descendants(node.pid)) for node in nodes]
        if kind == "socketspec":
            record["node_ids"] = [node_id(node) for node in nodes]
        pids = {"node_a": node_a.pid, "node_b": node_b.pid, "redis": redis.pid}
        commands_before = int(redis_info(redis.port, "stats").get("total_commands_processed", 0))
        if args.pin:
            os.sched_setaffinity(0, {GENERATOR_CPU})
        record.update(uvloop.run(across(node_a, node_b, pids, dialect, options)))
        os.sched_setaffinity(0, everywhere)
        commands = redis_info(redis.port, "commandstats")
        calls = re.search(r"calls=(\d+)", commands.get("cmdstat_publish", ""))
        publishes = int(calls.group(1)) if calls else 0
        sent = record.get("broadcasts_sent")
        record["redis_publish_calls"] = publishes
        record["redis_publishes_per_broadcast"] = round(publishes / sent, 3) if sent else None
        record["redis_commands"] = (
            int(redis_info(redis.port, "stats").get("total_commands_processed", 0))
            - commands_before
        )
        if kind == "socketspec":
            time.sleep(METRICS_SETTLE)  # the shards fold their counts into /metrics each second
            record["node_a_metrics"] = scrape(node_a)
            record["node_b_metrics"] = scrape(node_b)
    except venvs.VenvError as exc:
        record["error"] = f"environment: {exc}"
    except ServerError as exc:
        record["error"] = str(exc)
    except Exception as exc:  # one failed run is recorded; the others go on
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        os.sched_setaffinity(0, everywhere)
        exits = [node.stop() for node in nodes]
        redis_exit = redis.stop() if redis is not None else None
    record["node_exits"] = exits
    record["redis_exit"] = redis_exit
    if redis is not None:
        record["redis_files_on_disk"] = redis.files_on_disk
    troubled = (
        "error" in record
        or record.get("missing_deliveries")
        or record.get("extra_deliveries")
        or any(code not in CLEAN_EXITS for code in exits)
        or redis_exit not in CLEAN_EXITS
    )
    if troubled:
        record["logs"] = {
            f"node_{label}": node.log_tail(10) for label, node in zip("ab", nodes, strict=False)
        }
        if redis is not None:
            record["logs"]["redis"] = redis.log_tail(10)
    if redis is not None:
        redis.remove()
    return record


# -- results --------------------------------------------------------------------------------------


def number(value: float | None, metric: str, digits: int | None) -> str:
    if value is None:
        return "–"
    if metric == "redis_cpu_share":
        return f"{value * 100:.1f}%"
    return report.number(value, report.digits_for(value) if digits is None else digits)


def comparison_table(servers: list[str], summary: dict[str, Any]) -> list[str]:
    both = "socketspec" in servers and PEER in servers
    header = "| measure | " + " | ".join(servers)
    if both:
        header += " | socketspec ÷ python-socketio"
    lines = [header + " |", "|---|" + "---:|" * (len(servers) + (1 if both else 0))]
    for metric, label, digits, higher in MEASURES:
        values = {name: report.median_of(summary, f"{WORKLOAD}/{name}", metric) for name in servers}
        cells = [number(values[name], metric, digits) for name in servers]
        if both:
            cells.append(
                report.ratio(values["socketspec"], values[PEER]) if higher is not None else ""
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def runs_table(summary: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| server | runs | members | missing deliveries | extra deliveries | generator "
        "saturated runs | rest of the machine busy | problems |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, entry in summary.items():
        server = key.split("/")[1]
        runs = [r for r in records if r["server"] == server]
        found = list(entry["problems"])
        for record in runs:
            codes = [*record.get("node_exits", []), record.get("redis_exit")]
            if any(code not in CLEAN_EXITS for code in codes):
                found.append(f"run {record['run']}: exit codes {codes}")
            if record.get("redis_files_on_disk"):
                found.append(f"run {record['run']}: redis wrote {record['redis_files_on_disk']}")
        shown = "; ".join(found[:3]) + (f" (+{len(found) - 3})" if len(found) > 3 else "")
        lines.append(
            f"| {server} | {entry['good_runs']}/{entry['runs']} "
            f"| {report.number(entry['median'].get('members'))} "
            f"| {sum(r.get('missing_deliveries', 0) for r in runs)} "
            f"| {sum(r.get('extra_deliveries', 0) for r in runs)} "
            f"| {entry['saturated_runs']} "
            f"| {report.number(entry['median'].get('other_cpu_utilization'), 2)} "
            f"| {shown or 'none'} |"
        )
    return lines


def versions_line(found: dict[str, Any]) -> str:
    keep = {
        "socketspec": ("socketspec", "redis", "uvloop", "orjson"),
        PEER: ("python-socketio", "python-engineio", "redis", "uvicorn", "websockets"),
        "redis-server": ("redis-server",),
    }
    parts = []
    for server, names in keep.items():
        installed = found.get(server)
        if installed:
            parts.append(
                f"{server}: "
                + ", ".join(f"{name} {installed[name]}" for name in names if name in installed)
            )
    return "; ".join(parts) + "."


def results_markdown(
    meta: dict[str, Any], summary: dict[str, Any], records: list[dict[str, Any]], title: bool
) -> str:
    options = meta["options"]
    m = meta["machine"]
    placement = (
        f"node A, node B and redis-server share core {meta['pinned']['server']}, the load "
        f"generator runs on core {meta['pinned']['generator']}"
        if meta.get("pinned")
        else "nothing pinned"
    )
    lines = ["# Room broadcast across nodes (Redis)", ""] if title else []
    if meta.get("smoke"):
        lines += ["**Smoke run**: small and short, functional only; not a measurement.", ""]
    failing = [key for key, entry in summary.items() if entry["problems"]]
    if failing:
        lines += ["**Problems** in: " + ", ".join(failing) + " (table below).", ""]
    busy = [
        (entry["median"]["other_cpu_utilization"], key)
        for key, entry in summary.items()
        if entry["median"].get("other_cpu_utilization") is not None
    ]
    if busy and max(busy)[0] > report.DISTURBED:
        lines += [
            f"**Disturbed run**: other work kept up to {max(busy)[0]:.2f} cores busy during "
            f'the measured windows (the median of {max(busy)[1]}; "rest of the machine busy" '
            "below): rates are then lower than on a quiet machine; server CPU per delivery is "
            "affected less.",
            "",
        ]
    saturated = [key for key, entry in summary.items() if entry["saturated_runs"]]
    if saturated:
        lines += [
            "**Generator saturated** (0.90 of its core or more) in some runs of: "
            + ", ".join(saturated)
            + ": there the generator, not the servers, may have set the pace.",
            "",
        ]
    lines += [
        f"{meta['started'][:16].replace('T', ' ')} UTC; `{meta['command']}`; socketspec at "
        f"{meta['socketspec_source']}; medians over {meta['runs']} run"
        + ("s" if meta["runs"] > 1 else "")
        + f" of {options['duration']:g} s measured (after {options['warmup']:g} s of warm-up), "
        f"a fresh redis-server and two fresh nodes per run; {placement}. Machine: "
        f"{m.get('cores')} cores, {m.get('cpu', 'unknown CPU')}, Linux {m.get('kernel')}, "
        f"Python {m.get('python')}. The whole run took {meta.get('seconds', 0) / 60:.1f} minutes.",
        "",
        f"{options['members']:,} members connected to node B join the room; one sender "
        f"connected to node A shouts as fast as accepted, at most {options['window']} "
        "broadcasts ahead of the slowest member, so every broadcast goes node A → Redis → "
        "node B → every member. Server CPU is user + system of both nodes' process trees and "
        "of redis-server (/proc) over the measured window, divided by the deliveries in it; "
        "the ratio is socketspec's value divided by python-socketio's (above 1.00× is better "
        "for socketspec where more is better, below 1.00× where less is better).",
        "",
        *comparison_table(meta["servers"], summary),
        "",
        "Runs:",
        "",
        *runs_table(summary, records),
        "",
        "Versions: " + versions_line(meta["versions"]),
        "",
    ]
    return "\n".join(lines)


def write(
    meta: dict[str, Any], records: list[dict[str, Any]], out: Path, docs: Path, *, smoke: bool
) -> list[Path]:
    summary = report.summarise(records)
    out.mkdir(parents=True, exist_ok=True)
    stem = "nodes-" + ("smoke-" if smoke else "")
    stem += meta["started"][:16].replace(":", "").replace("T", "-")
    written = []
    data = out / f"{stem}.json"
    data.write_text(json.dumps({**meta, "records": records, "summary": summary}, indent=1) + "\n")
    written.append(data)
    text = results_markdown(meta, summary, records, title=True)
    page = out / f"{stem}.md"
    page.write_text(text)
    written.append(page)
    if smoke:
        return written
    latest = out / "nodes-latest.md"
    latest.write_text(text)
    written.append(latest)
    performance = docs / "performance.md"
    if performance.exists():
        current = performance.read_text()
        if BEGIN in current and END in current:
            head, rest = current.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            body = results_markdown(meta, summary, records, title=False)
            performance.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
            written.append(performance)
    return written


# -- main -----------------------------------------------------------------------------------------


def versions(servers: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "socketspec": {name: version(name) for name in ("socketspec", "redis", "uvloop", "orjson")},
        "generator": {"uvloop": version("uvloop")},
    }
    if PEER in servers:
        found[PEER] = dict(line.split("==", 1) for line in venvs.frozen(PEER) if "==" in line)
    binary = redis_binary()
    if binary:
        try:
            text = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            match = re.search(r"v=(\S+)", text)
            found["redis-server"] = {"redis-server": match.group(1) if match else text.strip()}
        except (OSError, subprocess.SubprocessError):
            pass
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=positive(int), default=3)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--members", type=positive(int), default=defaults.members)
    parser.add_argument("--window", type=positive(int), default=defaults.window)
    parser.add_argument("--duration", type=positive(float), default=defaults.duration)
    parser.add_argument("--warmup", type=positive(float), default=defaults.warmup)
    parser.add_argument("--size", type=positive(int), default=defaults.size)
    parser.add_argument("--quiet-wait", type=float, default=3.0, help="seconds, before each run")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one run, small and short, socketspec only; writes nodes-smoke-* files only",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.servers, args.members = 1, "socketspec", 50
        args.duration, args.warmup, args.quiet_wait = 0.5, 0.3, 0.0
    args.servers = [name for name in args.servers.split(",") if name]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        parser.error(f"--servers: from {', '.join(SERVERS)}, got {unknown or 'none'}")
    if args.runs > 20 or args.duration > 120 or args.warmup > 30 or args.members > 10_000:
        parser.error("at most: --runs 20, --duration 120, --warmup 30, --members 10000")
    if (os.cpu_count() or 1) <= GENERATOR_CPU:
        args.pin = False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        size=args.size,
        members=args.members,
        window=args.window,
    )
    if args.smoke:
        options = dataclasses.replace(options, settle=0.3, drain_timeout=5.0)
    if redis_binary() is None:
        print("[nodes] redis-server not found: apt-get install redis-server", file=sys.stderr)
        return 2
    # This process holds every connection, node B their other ends (it inherits the limit).
    raise_fd_limit(args.members + 1024)
    started = dt.datetime.now(dt.UTC)
    if PEER in args.servers:  # before anything is timed: the first install takes a while
        try:
            venvs.ensure(PEER)
        except venvs.VenvError as exc:
            print(f"[nodes] {exc}", file=sys.stderr)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["bench/nodes.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": args.smoke,
        "socketspec_source": source_revision(),
        "machine": machine(),
        "versions": versions(args.servers),
        "options": dataclasses.asdict(options),
        "runs": args.runs,
        "servers": args.servers,
        "workloads": [WORKLOAD],
        "pinned": {"server": SERVER_CPU, "generator": GENERATOR_CPU} if args.pin else None,
        "placement": "node A, node B and redis-server on core 0; the load generator on core 1"
        if args.pin
        else "nothing pinned",
    }
    print(f"[nodes] {meta['placement']}", file=sys.stderr, flush=True)
    records = []
    steps = [(name, run) for run in range(1, args.runs + 1) for name in args.servers]
    for index, (name, run) in enumerate(steps, 1):
        print(
            f"[nodes] {index}/{len(steps)} run {run}: {name}, 2 nodes + redis ...",
            file=sys.stderr,
            flush=True,
        )
        record = run_one(name, run, options, args)
        records.append(record)
        print(json.dumps(record), flush=True)
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["seconds"] = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1)
    for path in write(meta, records, args.out, args.docs, smoke=args.smoke):
        print(f"[nodes] wrote {path}", file=sys.stderr)
    failed = any(
        "error" in record or record.get("missing_deliveries") or record.get("extra_deliveries")
        for record in records
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
