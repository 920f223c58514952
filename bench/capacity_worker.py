"""One process of the capacity workload's load generator (bench/capacity.py runs several).

A process holds at most what its file-descriptor limit allows, so 100,000 connections
take several of them, each connecting from its own loopback source address (127.0.0.x:
every source address has its own range of ephemeral ports). Each opens its share of
room members with bench/generator.py's ``Client`` (past the greeting and the ack of
``join``), says so on stdout, and then obeys one command a line on stdin, answering each
with one JSON line:

- ``arm``: forget the delivery times measured so far and time every ``said`` from now on
  (``{"armed": true}``);
- ``collect K SECONDS``: wait (at most SECONDS) until every member has K ``said`` frames
  or is gone; answers the members' delivery latencies (ns, receipt time minus the send
  time stamped in the payload), how many got the K-th, how many are gone, extra frames,
  and this process's CPU seconds so far;
- ``close``: abort every connection and exit.

    python bench/capacity_worker.py --port P --path /ws --count N --source 127.0.0.2
        [--first-index I] [--deadline 240]

Only 127.0.0.1 as the destination; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson
import uvloop
from generator import DIALECTS, SAID, SOCKETSPEC, Client, Stats, open_clients

CONCURRENCY = 128  # connections being opened at a time, per process


async def collect(members: list[Client], stats: Stats, want: int, seconds: float) -> dict[str, Any]:
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        if all(m.count >= want or m.lost.done() for m in members):
            break
        await asyncio.sleep(0.005)
    latencies = [sample for samples in stats.latencies_ns.values() for sample in samples]
    return {
        "latencies_ns": latencies,
        "received": sum(1 for m in members if m.count >= want),
        "extra": sum(max(0, m.count - want) for m in members),
        "lost": sum(1 for m in members if m.lost.done()),
        "cpu_s": time.process_time(),
    }


def say(message: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    dialect = DIALECTS[SOCKETSPEC]
    stats = Stats(sample_every=1)
    started = time.perf_counter()
    members, failed = await open_clients(
        args.count,
        args.port,
        args.path,
        dialect,
        stats,
        mode=SAID,
        join=True,
        first_index=args.first_index,
        concurrency=CONCURRENCY,
        timeout=30.0,
        deadline=args.deadline,
        source=args.source,
    )
    say(
        {
            "opened": len(members),
            "failed": failed,
            "seconds": round(time.perf_counter() - started, 3),
            "cpu_s": time.process_time(),
            "errors": stats.errors[:5],
        }
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := (await reader.readline()).decode().split():
            if line[0] == "arm":
                stats.latencies_ns.clear()
                stats.sampling = True
                say({"armed": True})
            elif line[0] == "collect":
                say(await collect(members, stats, int(line[1]), float(line[2])))
            elif line[0] == "close":
                break
    finally:
        for member in members:
            if member.transport is not None:
                member.transport.abort()
        say(
            {
                "closed": len(members),
                "server_closes": stats.server_closes,
                "errors": stats.errors[:5],
                "cpu_s": time.process_time(),
            }
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one process of the capacity workload")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=240.0)
    uvloop.run(main(parser.parse_args()))
