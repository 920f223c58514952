"""The capacity workload of bench/run.py: one room of 10,000, 50,000 and 100,000 members.

For each level a fresh cluster (``socketspec-cluster bench_app:socket``, no connection
caps) is loaded with that many room members, opened by several generator processes
(bench/capacity_worker.py, each from its own loopback source address 127.0.0.x, since one
address has fewer ephemeral ports than 100,000 connections need), and then:

- connect rate: members opened and joined (upgrade, greeting, ``join`` and its ack) per
  second, all processes together;
- memory per connection, idle: growth of the cluster's resident memory (the supervisor
  and every shard) over the members, and the kernel's memory for their sockets, counted
  as half of the growth of the machine's slab memory plus TCP buffer pages
  (/proc/meminfo, /proc/net/sockstat: both ends of each connection are on this machine
  and cost the kernel the same);
- ``broadcasts`` broadcasts, one at a time, from one more connection (not a member) on
  127.0.0.1: for each, the time from the shout to the first and to the last member's
  receipt (the send time is stamped in the payload), first-to-last, p50 and p99 over the
  members, the cluster's CPU per delivery and the generator processes' own CPU (which
  says whether they, not the server, set the pace).

Every member must receive every broadcast once: missing and extra deliveries are counted.

The file-descriptor limit: the harness raises its soft limit to the hard one, and the
cluster and the generator processes inherit it. A shard holds one descriptor per
connection, so where the hard limit is too low for the asked number of shards, the level
runs on as many shards as it takes (``shards`` and ``shards_reason`` in its record).

Only 127.0.0.0/8; every wait is bounded; every process started is stopped.
"""

from __future__ import annotations

import asyncio
import math
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from generator import DIALECTS, SAID, SOCKETSPEC, Stamper, Stats, close_clients, open_clients
from servers import BIN, ServerError, start_server, tree_cpu_seconds, tree_rss_kib
from workloads import at

HERE = Path(__file__).resolve().parent
LEVELS = (10_000, 50_000, 100_000)
SMOKE_LEVELS = (60, 120)
FD_RESERVE = 512  # descriptors a process keeps for everything but connections
WARM_CONNECTIONS = 20
SETTLE = 2.0
SOURCES_PER_LEVEL = 32  # 127.0.0.(2 + level_index * 32 + process): no port left in TIME_WAIT


@dataclass(frozen=True)
class CapacityOptions:
    levels: tuple[int, ...] = LEVELS
    shards: int = 2
    broadcasts: int = 5
    size: int = 100
    connect_deadline: float = 240.0
    delivery_timeout: float = 30.0


def descriptor_limit() -> int:
    """The hard limit, after raising the soft one to it (inherited by what is started)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def kernel_socket_kib() -> int:
    """Slab memory plus TCP buffer pages of the whole machine, KiB."""
    slab = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            slab = int(line.split()[1])
    pages = 0
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            pages = int(fields[fields.index("mem") + 1])
    return slab + pages * (resource.getpagesize() // 1024)


class Generator:
    """One capacity_worker.py process and its command line on stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, port: int, path: str, count: int, source: str, first: int) -> Generator:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "capacity_worker.py"),
            "--port",
            str(port),
            "--path",
            path,
            "--count",
            str(count),
            "--source",
            source,
            "--first-index",
            str(first),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=HERE,
            limit=64 * 1024 * 1024,  # a collect answer carries every member's latency
        )
        return cls(process)

    async def answer(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"generator process exited ({await self.process.wait()})")
        result: dict[str, Any] = orjson.loads(line)
        return result

    async def ask(self, command: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        return await self.answer(timeout)

    async def stop(self) -> dict[str, Any] | None:
        answer = None
        if self.process.returncode is None:
            try:
                answer = await self.ask("close", 30)
                await asyncio.wait_for(self.process.wait(), 10)
            except (OSError, RuntimeError, TimeoutError):
                self.process.kill()
                await self.process.wait()
        return answer


async def level(members: int, index: int, options: CapacityOptions, limit: int) -> dict[str, Any]:
    per_process = limit - FD_RESERVE
    shards = max(options.shards, math.ceil(members * 1.05 / per_process))
    record: dict[str, Any] = {
        "workload": "capacity",
        "server": "socketspec",
        "level": members,
        "shards": shards,
        "descriptor_limit": limit,
    }
    if shards != options.shards:
        record["shards_reason"] = (
            f"{members:,} connections on {options.shards} shards need more than the "
            f"descriptor limit of {limit:,} per process"
        )
    processes = max(2, math.ceil(members / per_process))
    argv = [
        str(BIN / "socketspec-cluster"),
        "bench_app:socket",
        "--workers",
        str(shards),
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--max-connections",
        "0",
        "--max-per-ip",
        "0",
    ]
    try:
        server = start_server(f"capacity-{members}", argv, cwd=HERE / "apps")
    except ServerError as exc:
        return {**record, "error": str(exc)}
    generators: list[Generator] = []
    dialect = DIALECTS[SOCKETSPEC]
    stats = Stats(sample_every=1)
    try:
        warm, _ = await open_clients(
            WARM_CONNECTIONS, server.port, server.path, dialect, stats, mode=SAID, join=True
        )
        await close_clients(warm)
        await asyncio.sleep(SETTLE)
        rss_before = tree_rss_kib(server.pid)
        kernel_before = kernel_socket_kib()
        cpu_before = tree_cpu_seconds(server.pid)
        shares = [members // processes + (k < members % processes) for k in range(processes)]
        opened_at = time.perf_counter()
        first = 0
        for k, share in enumerate(shares):
            source = f"127.0.0.{2 + index * SOURCES_PER_LEVEL + k}"
            generators.append(await Generator.start(server.port, server.path, share, source, first))
            first += share
        opened = await asyncio.gather(
            *(g.answer(options.connect_deadline + 30) for g in generators)
        )
        opening = time.perf_counter() - opened_at
        connect_cpu = tree_cpu_seconds(server.pid) - cpu_before
        count = sum(answer["opened"] for answer in opened)
        record.update(
            members=count,
            failed_members=sum(answer["failed"] for answer in opened),
            generator_processes=processes,
            connect_seconds=round(opening, 2),
            connections_per_s=round(count / opening, 1),
            server_cpu_us_per_connection=round(connect_cpu / count * 1e6, 1) if count else None,
            errors=[error for answer in opened for error in answer["errors"]][:5],
        )
        if not count:
            return {**record, "error": "no member connected"}
        await asyncio.sleep(SETTLE)
        rss_after = tree_rss_kib(server.pid)
        kernel_after = kernel_socket_kib()
        server_kib = (rss_after - rss_before) / count
        kernel_kib = (kernel_after - kernel_before) / 2 / count
        record.update(
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            server_kib_per_connection=round(server_kib, 2),
            kernel_kib_per_connection=round(kernel_kib, 2),
            kib_per_connection=round(server_kib + kernel_kib, 2),
        )
        record.update(await broadcasts(server, generators, count, options))
    except Exception as exc:  # the level is recorded as failed; the next one goes on
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        closing = await asyncio.gather(*(g.stop() for g in generators), return_exceptions=True)
        code = server.stop(30)
    record["server_exit"] = code
    answers = [answer for answer in closing if isinstance(answer, dict)]
    record["server_closes"] = sum(answer["server_closes"] for answer in answers)
    errors = [e for answer in answers for e in answer["errors"]]
    if errors:
        record["errors"] = [*record.get("errors", []), *errors][:5]
    if "error" in record or code not in (0, None):
        record["server_log"] = server.log_tail(10)
    return record


async def broadcasts(
    server: Any, generators: list[Generator], members: int, options: CapacityOptions
) -> dict[str, Any]:
    """``options.broadcasts`` broadcasts to every member, one at a time."""
    dialect = DIALECTS[SOCKETSPEC]
    stats = Stats()
    opened, _ = await open_clients(1, server.port, server.path, dialect, stats, mode=SAID)
    if not opened or opened[0].transport is None:
        raise RuntimeError("the sender could not connect")
    sender = opened[0]
    stamper = Stamper(dialect, options.size)
    spans, lasts, firsts, generator_cores = [], [], [], []
    server_cpu = generators_cpu = 0.0
    pooled: list[int] = []
    missing = extra = lost = 0
    try:
        for number in range(1, options.broadcasts + 1):
            await asyncio.gather(*(g.ask("arm", 30) for g in generators))
            before = [await g.ask("collect 0 0", 30) for g in generators]
            cpu0 = tree_cpu_seconds(server.pid)
            assert sender.transport is not None
            sender.transport.write(stamper.frame(time.perf_counter_ns()))
            answers = await asyncio.gather(
                *(
                    g.ask(
                        f"collect {number} {options.delivery_timeout}",
                        options.delivery_timeout + 30,
                    )
                    for g in generators
                )
            )
            cpu1 = tree_cpu_seconds(server.pid)
            latencies = sorted(sample for a in answers for sample in a["latencies_ns"])
            received = sum(a["received"] for a in answers)
            missing += members - received
            extra += sum(a["extra"] for a in answers)
            lost = max(lost, sum(a["lost"] for a in answers))
            if latencies:
                firsts.append(latencies[0] / 1e6)
                lasts.append(latencies[-1] / 1e6)
                spans.append((latencies[-1] - latencies[0]) / 1e6)
                pooled += latencies
            generator_cpu = sum(
                a["cpu_s"] - b["cpu_s"] for a, b in zip(answers, before, strict=True)
            )
            # The window ends when the last answer is in: an upper bound of the server's
            # work for the broadcast (heartbeats of the idle members included). Summed over
            # the broadcasts, since /proc counts CPU in ticks of 10 ms.
            server_cpu += cpu1 - cpu0
            generators_cpu += generator_cpu
            if lasts:
                generator_cores.append(generator_cpu / max(lasts[-1] / 1e3, 1e-6))
            await asyncio.sleep(0.5)
    finally:
        await close_clients([sender])
    pooled.sort()

    def median(values: list[float], digits: int = 2) -> float | None:
        return round(statistics.median(values), digits) if values else None

    return {
        "broadcasts": options.broadcasts,
        "deliveries": len(pooled),
        "first_delivery_ms": median(firsts),
        "last_delivery_ms": median(lasts),
        "first_to_last_ms": median(spans),
        "first_to_last_max_ms": round(max(spans), 2) if spans else None,
        "latency_p50_ms": at(0.50, pooled),
        "latency_p99_ms": at(0.99, pooled),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_us_per_delivery": round(server_cpu / len(pooled) * 1e6, 3) if pooled else None,
        "generator_cpu_us_per_delivery": round(generators_cpu / len(pooled) * 1e6, 3)
        if pooled
        else None,
        "generator_cpu_utilization": median(generator_cores),
        "generator_saturated": bool(generator_cores) and statistics.median(generator_cores) >= 0.9,
        "missing_deliveries": missing,
        "extra_deliveries": extra,
        "members_lost": lost,
    }


async def run(options: CapacityOptions, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Every level in turn, a fresh cluster each; each record (with ``extra``) is printed
    as one JSON line as soon as it is measured."""
    limit = descriptor_limit()
    records = []
    for index, members in enumerate(options.levels):
        print(f"[bench] capacity: {members:,} members ...", file=sys.stderr, flush=True)
        records.append({**await level(members, index, options, limit), **extra})
        print(orjson.dumps(records[-1]).decode(), flush=True)
    return records
