"""Where the time of one echo message goes in socketspec, measured in-process (no sockets).

    make bench-breakdown
    .venv/bin/python bench/breakdown.py [--messages 40000] [--repeat 5] [--markdown PATH]

Drives socketspec's own server protocol (``WebSocketProtocol`` with a ``ShardContext``,
the app of bench/apps/bench_app.py) on uvloop through a fake transport: a real HTTP
upgrade request first, then batches of 8 masked 100-byte ``echo`` frames per
``data_received`` (what 50 connections × 8 in flight deliver in one read), each batch
waited for until its 8 echoes were written (one loop iteration per batch). Without
sockets or a load generator the figures repeat from run to run within a few percent, so
that a change to the hot path shows up here before it does in bench/run.py.

Layers, each the real code with the next layer cut off, in CPU time per message
(``time.process_time`` over ``--messages`` messages, median of ``--repeat`` runs, after
a warm-up):

- (a) frame parsing only: ``FrameReader.feed`` on the 8-frame batch;
- (b) echo mode (``ShardContext`` without an app): parse, frame each reply, queue it,
  flush the batch in one write, one loop iteration per batch;
- (c) the full app path: (b) with the application instead of the echo (decode, admit,
  the handler run in its first step by ``socketspec.eager`` (no task: it does not
  suspend), the handler's ``conn.emit``, metrics tally).

Then costs measured in isolation (``timeit``, CPU time, median of ``--repeat``):
``envelope.decode`` of the message, the echo definition's ``parse_payload`` (and, for
reference, pydantic validating the same payload into a model, which this app does not
do), ``envelope.encode`` of the reply, one ``eager.start`` of a handler that finishes at
once (and, for reference, creating and running one asyncio task instead), one loop
iteration, one ``TALLY.add`` and ``TALLY.observe``, and ``protocol.write`` of one
envelope. Prints a markdown table (µs per message, share of the full app path) and
writes it to ``--markdown`` (default bench/results/breakdown.md). About 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import uvloop
from pydantic import BaseModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "apps"))

from bench_app import socket as bench_app  # noqa: E402
from generator import DIALECTS, OP_TEXT, SOCKETSPEC, client_frame, echo_payload  # noqa: E402
from servers import source_revision  # noqa: E402

from socketspec import eager, envelope, metrics  # noqa: E402
from socketspec.metrics import TALLY  # noqa: E402
from socketspec.server.codec import FrameReader  # noqa: E402
from socketspec.server.config import ServerConfig  # noqa: E402
from socketspec.server.protocol import WebSocketProtocol, new_protocol  # noqa: E402
from socketspec.server.shard import ShardContext  # noqa: E402
from socketspec.server.websocket import Phase  # noqa: E402

BATCH = 8
SIZE = 100
MASK_KEY = b"\x5a\x1c\x93\xe7"
WARMUP_MESSAGES = 4000
MAX_ITERATIONS_PER_BATCH = 1000  # a batch whose echoes never come is a failure, not a hang
HANDSHAKE_ITERATIONS = 1000
TALLY_ADDS = 2 + 4 / BATCH  # per message on the app path


class FakeTransport:
    """What the protocol writes to, counted in frames; nothing leaves the process."""

    def __init__(self) -> None:
        self.frames = 0
        self.writes = 0
        self.last = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.frames += 1
        self.writes += 1
        self.last = data

    def writelines(self, data: Iterable[bytes]) -> None:
        frames = list(data)
        self.frames += len(frames)
        self.writes += 1
        self.last = frames[-1]

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@dataclass
class Row:
    layer: str
    us: float
    note: str = ""
    share: bool = True  # of the full app path


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


# -- the protocol under a fake transport ----------------------------------------------------------


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16))
    return (
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
    )


async def open_protocol(app: Any) -> tuple[WebSocketProtocol, FakeTransport]:
    """A protocol past its upgrade (and, with an app, past its admission and greeting)."""
    ctx = ShardContext(app, ServerConfig(), asyncio.get_running_loop())
    protocol = new_protocol(ctx)
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(upgrade_request())
    for _ in range(HANDSHAKE_ITERATIONS):
        if protocol.phase is Phase.OPEN and (app is None or transport.frames >= 2):
            break
        await asyncio.sleep(0)
    if protocol.phase is not Phase.OPEN:
        raise RuntimeError(f"the upgrade did not complete: {protocol.phase}, {transport.last!r}")
    if not transport.last.startswith(b"HTTP/1.1 101") and b"__connect__" not in transport.last:
        raise RuntimeError(f"unexpected answer to the upgrade: {transport.last[:200]!r}")
    return protocol, transport


async def drive(
    protocol: WebSocketProtocol, transport: FakeTransport, chunk: bytes, messages: int
) -> tuple[float, int]:
    """Feed ``messages`` in batches, each waited for until its echoes are written;
    returns (CPU seconds, loop iterations)."""
    target = transport.frames
    iterations = 0
    batches = messages // BATCH
    started = time.process_time()
    for _ in range(batches):
        protocol.data_received(chunk)
        target += BATCH
        waited = 0
        while transport.frames < target:
            await asyncio.sleep(0)
            waited += 1
            if waited > MAX_ITERATIONS_PER_BATCH:
                raise RuntimeError(f"a batch was not echoed; last write {transport.last!r}")
        iterations += waited
    return time.process_time() - started, iterations


async def layer(
    app: Any, chunk: bytes, expected: bytes, messages: int, repeat: int
) -> tuple[float, float]:
    """(µs CPU per message, loop iterations per batch) of one protocol echoing batches."""
    protocol, transport = await open_protocol(app)
    await drive(protocol, transport, chunk, WARMUP_MESSAGES)
    if transport.last != expected:
        raise RuntimeError(f"wrong echo: {transport.last!r}, expected {expected!r}")
    samples = []
    iterations = 0
    for _ in range(repeat):
        gc.collect()
        seconds, iterations = await drive(protocol, transport, chunk, messages)
        samples.append(seconds / (messages // BATCH * BATCH))
    transport.close()
    protocol.connection_lost(None)
    await asyncio.sleep(0)
    return median_us(samples), iterations / (messages // BATCH)


def parsing(chunk: bytes, messages: int, repeat: int) -> float:
    limit = ServerConfig().max_message_size
    reader = FrameReader(limit, limit)
    events = reader.feed(chunk)
    if len(events) != BATCH or not all(isinstance(e, str) for e in events):
        raise RuntimeError(f"the frame reader returned {events!r}")
    batches = messages // BATCH
    for _ in range(WARMUP_MESSAGES // BATCH):
        reader.feed(chunk)
    samples = []
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        for _ in range(batches):
            reader.feed(chunk)
        samples.append((time.process_time() - started) / (batches * BATCH))
    return median_us(samples)


# -- isolated costs -------------------------------------------------------------------------------


def per_call(stmt: str, names: dict[str, Any], number: int, repeat: int) -> float:
    """µs CPU per execution of ``stmt``: median over ``repeat`` timings of ``number``."""
    timer = timeit.Timer(stmt, globals=names, timer=time.process_time)
    timer.timeit(max(1, number // 10))  # warm-up
    return statistics.median(t / number for t in timer.repeat(repeat, number)) * 1e6


async def nothing() -> None:
    return None


async def loop_costs(messages: int, repeat: int) -> tuple[float, float]:
    """(µs per task created and run, µs per loop iteration), batches of ``BATCH`` tasks
    per iteration as the app path makes them."""
    loop = asyncio.get_running_loop()
    batches = messages // BATCH

    async def iterations() -> float:
        started = time.process_time()
        for _ in range(batches):
            await asyncio.sleep(0)
        return time.process_time() - started

    async def tasks() -> float:
        running: set[asyncio.Task[None]] = set()
        started = time.process_time()
        for _ in range(batches):
            for _ in range(BATCH):
                task = loop.create_task(nothing())  # kept and forgotten as rt.spawn does
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        return time.process_time() - started

    await iterations()
    await tasks()
    idle, busy = [], []
    for _ in range(repeat):
        gc.collect()
        idle.append(await iterations() / batches)
        busy.append(await tasks() / batches)
    iteration = statistics.median(idle)
    task = (statistics.median(busy) - iteration) / BATCH
    return task * 1e6, iteration * 1e6


def eager_cost(messages: int, repeat: int) -> float:
    """µs per ``eager.start`` of a handler that finishes in its first step (what
    ``rt.spawn`` does for such a handler: no task)."""
    loop = asyncio.get_running_loop()
    start = eager.start
    samples = []
    for _ in range(repeat + 1):
        gc.collect()
        started = time.process_time()
        for _ in range(messages):
            start(loop, nothing())
        samples.append((time.process_time() - started) / messages)
    return median_us(samples[1:])


class EchoPayload(BaseModel):
    user: str
    text: str


async def isolated(raw: str, repeat: int) -> dict[str, float]:
    decoded = envelope.decode(raw)
    assert isinstance(decoded, envelope.Inbound), decoded
    payload = decoded.payload
    bench_app.startup()
    definition = bench_app.registry.get("/", "echo")
    if definition is None:
        raise RuntimeError("bench_app has no echo event")
    reply = envelope.encode("echo", payload)
    names: dict[str, Any] = {
        "decode": envelope.decode,
        "raw": raw,
        "raw_bytes": raw.encode(),
        "loads": orjson.loads,
        "parse": definition.parse_payload,
        "validate": EchoPayload.model_validate,
        "payload": payload,
        "encode": envelope.encode,
        "add": TALLY.add,
        "observe": TALLY.observe,
        "counter": metrics.frames_received,
        "histogram": metrics.handler_duration.labels(event="echo"),
    }
    number = 100_000
    costs = {
        "decode": per_call("decode(raw)", names, number, repeat),
        "parse_payload": per_call("parse(payload)", names, number, repeat),
        "pydantic": per_call("validate(payload)", names, number, repeat),
        "loads_str": per_call("loads(raw)", names, number, repeat),
        "loads_bytes": per_call("loads(raw_bytes)", names, number, repeat),
        "encode": per_call('encode("echo", payload)', names, number, repeat),
        "tally_add": per_call("add(counter, 1)", names, number, repeat),
        "tally_observe": per_call("observe(histogram, 0.00002)", names, number, repeat),
    }
    costs["task"], costs["iteration"] = await loop_costs(40_000, repeat)
    costs["eager"] = eager_cost(40_000, repeat)
    # protocol.write of one envelope: a fresh bytes object each time (the frame cache
    # only saves the framing of the very object it framed last, as in a broadcast).
    protocol, transport = await open_protocol(bench_app)
    envelopes = [bytes(bytearray(reply)) for _ in range(20_000)]
    write = protocol.write
    samples = []
    for _ in range(repeat + 1):
        gc.collect()
        started = time.process_time()
        for data in envelopes:
            write(data)
        samples.append((time.process_time() - started) / len(envelopes))
        protocol.flush()
    costs["write"] = median_us(samples[1:])
    transport.close()
    protocol.connection_lost(None)
    await asyncio.sleep(0)
    return costs


# -- the table ------------------------------------------------------------------------------------


async def measure(messages: int, repeat: int) -> tuple[list[Row], dict[str, Any]]:
    message = DIALECTS[SOCKETSPEC].message("echo", echo_payload(SIZE))
    frame = client_frame(OP_TEXT, message, MASK_KEY)
    chunk = frame * BATCH
    raw = message.decode()
    reply = envelope.encode("echo", envelope.decode(raw).payload)  # type: ignore[union-attr]
    expected = bytes((0x81, len(reply))) + reply  # what both paths answer, unmasked
    expected_echo = bytes((0x81, len(message))) + message

    parse_us = parsing(chunk, messages, repeat)
    echo_us, echo_iterations = await layer(None, chunk, expected_echo, messages, repeat)
    app_us, app_iterations = await layer(bench_app, chunk, expected, messages, repeat)
    costs = await isolated(raw, repeat)

    per_message_iteration = costs["iteration"] / BATCH
    itemised = (
        costs["decode"]
        + costs["parse_payload"]
        + costs["encode"]
        + costs["eager"]
        + TALLY_ADDS * costs["tally_add"]
        + costs["tally_observe"]
        + costs["write"]
    )
    app_layer = app_us - echo_us
    rows = [
        Row("(a) frame parsing only: `FrameReader.feed` on the 8-frame batch", parse_us),
        Row(
            "(b) echo mode (no app): parse + frame + queue + flush in one write per batch",
            echo_us,
            f"{echo_iterations:.1f} loop iteration(s) per batch",
        ),
        Row(
            "(c) full app path (bench_app `echo`)",
            app_us,
            f"{app_iterations:.1f} loop iteration(s) per batch",
        ),
        Row(
            "(b) − (a): the protocol around the parser",
            echo_us - parse_us,
            "echo framing, queue, flush, the loop iteration",
        ),
        Row("(c) − (b): the application layer", app_layer),
        Row("isolated: `envelope.decode` of the 100-byte message", costs["decode"]),
        Row(
            "isolated: the echo definition's `parse_payload`",
            costs["parse_payload"],
            "the handler takes a dict: no validation",
        ),
        Row(
            "isolated: `envelope.encode` of the reply",
            costs["encode"],
        ),
        Row(
            "isolated: `eager.start` of a handler that finishes in its first step",
            costs["eager"],
            "what `rt.spawn` costs such a handler (bench_app's `echo`): no task",
        ),
        Row(
            "isolated: one `TALLY.add`",
            costs["tally_add"],
            f"{TALLY_ADDS:g} per message on the app path: received and ok, and 4 per "
            f"batch of {BATCH} (frames and bytes, in and out)",
        ),
        Row(
            "isolated: one `TALLY.observe` (handler duration)",
            costs["tally_observe"],
            "1 per message",
        ),
        Row(
            "isolated: `protocol.write` of one envelope (frame, queue, count)",
            costs["write"],
        ),
        Row(
            "sum of the isolated costs of the app layer",
            itemised,
            f"decode + parse_payload + encode + eager start + {TALLY_ADDS:g} × add + observe "
            "+ write; "
            "write partly repeats what echo mode does too",
        ),
        Row(
            "app layer not itemised: (c) − (b) − that sum",
            app_layer - itemised,
            "admission, the handler and `conn.emit` chain, middleware chain, slots, "
            "flush on the last slot",
        ),
        Row(
            "for reference: one loop iteration (`await asyncio.sleep(0)`), per message",
            per_message_iteration,
            f"{costs['iteration']:.2f} µs per iteration, one per batch of {BATCH}; in (b), (c)",
        ),
        Row(
            "for reference: create and run one asyncio task on uvloop",
            costs["task"],
            f"what a handler that suspends costs besides; kept in a set until done (as "
            f"`rt.spawn`); {BATCH} per loop iteration, the iteration not counted",
            share=False,
        ),
        Row(
            "for reference: `orjson.loads` of the message as `str` (what decode gets)",
            costs["loads_str"],
            "the frame reader hands text messages over as `str`",
        ),
        Row(
            "for reference: `orjson.loads` of the same message as `bytes`",
            costs["loads_bytes"],
            share=False,
        ),
        Row(
            "for reference: pydantic validating the payload into a 2-field model",
            costs["pydantic"],
            "not on this app's path",
            share=False,
        ),
    ]
    info = {
        "messages": messages // BATCH * BATCH,
        "repeat": repeat,
        "full": app_us,
        "echo_iterations": echo_iterations,
        "app_iterations": app_iterations,
    }
    return rows, info


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    full = info["full"]
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# Where the time of one echo message goes",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; `bench/breakdown.py`; socketspec at "
        f"{source_revision()}; Python {platform.python_version()}, uvloop {version('uvloop')}, "
        f"orjson {version('orjson')}, pydantic {version('pydantic')}; {cpu}.",
        "",
        f"In-process, no sockets: socketspec's `WebSocketProtocol` behind a fake transport, "
        f"after a real HTTP upgrade, fed batches of {BATCH} masked {SIZE}-byte `echo` frames "
        f"per `data_received` (as 50 connections × 8 in flight arrive), each batch waited "
        f"for until its echoes are written. CPU time (`time.process_time`) per message over "
        f"{info['messages']:,} messages, median of {info['repeat']} runs; isolated costs with "
        f"`timeit`, median of {info['repeat']}. Shares are of the full app path "
        f"({full:.2f} µs). Metrics on (the tally), as `make bench` runs it.",
        "",
        "| layer | µs per message | share of the full app path | note |",
        "|---|---:|---:|---|",
    ]
    for row in rows:
        share = f"{row.us / full:.0%}" if row.share and full > 0 else "–"
        lines.append(f"| {row.layer} | {row.us:.2f} | {share} | {row.note} |")
    lines.append("")
    return "\n".join(lines)


def positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=positive, default=40_000, help="per run and layer")
    parser.add_argument("--repeat", type=positive, default=5, help="runs; the median is kept")
    parser.add_argument("--markdown", type=Path, default=HERE / "results" / "breakdown.md")
    args = parser.parse_args(argv)
    if args.messages > 1_000_000 or args.repeat > 50:
        parser.error("at most --messages 1000000 and --repeat 50")
    rows, info = uvloop.run(measure(args.messages, args.repeat))
    text = markdown(rows, info)
    print(text)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(text)
    print(f"[breakdown] wrote {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
