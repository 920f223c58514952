"""The fault campaign (``make chaos``, about 3 minutes): faults against a 2-shard cluster of
``bench/apps/chaos_app.py`` under load, and what every client saw.

Classes of fault, each repeated:

- ``kill -9``: a shard is killed with SIGKILL while senders broadcast numbered messages to
  a room whose listeners sit on both shards; the killed shard's clients reconnect.
- ``boot kill``: a replacement shard is killed within milliseconds of its fork, once after
  a kill -9 and once during a SIGHUP reload's rolling restart; the cluster should keep
  serving on the other shard and retry (only the very first boot may stop it).
- ``reload``: SIGHUP (a rolling restart of every shard) while clients connect, echo and
  disconnect in a loop, and the broadcast load goes on.
- ``stalled reader``: a member with a 4 KiB receive buffer stops reading while its room is
  flooded; when it reads again it should find close code 4008 after the data.
- ``recovery``: the connection-state recovery scenario of tests/support/recoverykit.py (the
  fault test of ``make test``) at a larger scale, on its own 2-shard cluster of
  tests/integration/apps/recovery_app.py: clients reconnecting with ``reconnect=`` through
  random drops, several kill -9s and reloads, checked for every room message exactly once,
  in position order, and every acked send (its own table below the others).

Accounting. A message is *sent* when its sender got the ack (the cluster took it). Every
listener connection is a session from its join's ack to its end; it should receive every
message sent after it joined and acknowledged before it ended, once, in each sender's order.
For each class the table gives the messages sent, the deliveries expected, and:
lost (expected, never received, on connections that stayed up or were drained: the
cluster's guarantee), duplicated, reordered (behind a later one of the same sender), and
cut (expected on connections whose shard was killed under them: at most once, so these
are the messages in flight when the shard died, not a broken guarantee). Lost messages are
listed under their class: sender and number, when acked (seconds from the class's first
ack), and the shards of the members that missed them.

Prints a markdown report (what ``docs/reliability.md`` records) and writes it with
``--out``. Run from the repository: ``python bench/chaos.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request, TextMessage

from socketspec.client import Client, ConnectRefused, connect
from socketspec.errors import ConnectionClosedError, ErrorReply

HERE = Path(__file__).resolve().parent
# The recovery class runs the fault test's scenario (tests/support/recoverykit.py) over
# clusterkit's cluster processes.
for _helpers in (
    HERE.parent / "tests" / "support",
    HERE.parent / "tests" / "integration" / "cluster",
):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))
APPS = HERE / "apps"
APP = "chaos_app:socket"
ANNOUNCE = re.compile(r"(\d+) shard\(s\) \(pids ([\d, ]+)\) listening on ws://127\.0\.0\.1:(\d+)")
READY = re.compile(r"shard (\d+) ready \(pid (\d+)\)")
HOUSEKEEPING = frozenset({"__connect__", "__ping__"})
ABNORMAL = 1006  # TCP ended without a close frame: the shard died


def now() -> float:
    return time.monotonic()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


# -- the cluster -----------------------------------------------------------------------------------


class Cluster:
    """``socketspec-cluster chaos_app:socket --workers 2`` on a fixed port, in its own
    session; stdout and stderr lines kept with the time they were read."""

    def __init__(self, port: int, extra: list[str]) -> None:
        self.port = port
        self.extra = extra
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.proc: Any = None
        self.tmpdir = ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        import subprocess

        self.tmpdir = tempfile.mkdtemp(prefix="chaos-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOCKETSPEC_")}
        env.update(
            {
                "TMPDIR": self.tmpdir,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(APPS), env.get("PYTHONPATH")) if p),
            }
        )
        args = [APP, "--workers", "2", "--port", str(self.port), "--graceful-timeout", "3"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "socketspec.server.cli", *args, "--metrics-port", "0",
             *self.extra],
            cwd=str(APPS),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()
        started = now()
        deadline = started + 60
        while not self.find(ANNOUNCE, after=started):  # not a line of an earlier start
            if self.proc.poll() is not None or now() > deadline:
                raise RuntimeError("the cluster did not start:\n" + self.text()[-3000:])
            time.sleep(0.05)

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self.lines.append((now(), line))

    def text(self) -> str:
        with self._lock:
            return "".join(line for _, line in self.lines)

    def find(
        self, pattern: re.Pattern[str], after: float = 0.0
    ) -> list[tuple[float, re.Match[str]]]:
        with self._lock:
            lines = list(self.lines)
        return [(t, m) for t, line in lines if t >= after and (m := pattern.search(line))]

    def shard_pids(self) -> dict[int, int]:
        """The latest pid that reported ready for each shard."""
        pids: dict[int, int] = {}
        for _, found in self.find(READY):
            pids[int(found.group(1))] = int(found.group(2))
        return pids

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """/readyz: every shard serves."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(json.loads(r.read())["ready"])
        except (OSError, ValueError, KeyError):
            return False

    async def wait_ready(self, timeout: float) -> float | None:
        """Seconds until /readyz says every shard serves (None: not within ``timeout``)."""
        started = now()
        while now() - started < timeout:
            if not self.alive():
                return None
            if await asyncio.to_thread(self.ready):
                return now() - started
            await asyncio.sleep(0.02)
        return None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left of its session
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def kill_next_child(supervisor: int, known: set[int], timeout: float) -> tuple[int, float] | None:
    """SIGKILL the first child of ``supervisor`` not in ``known`` as soon as it appears
    (polled every 0.5 ms); returns its pid and how long it had lived at most, in seconds."""
    deadline = now() + timeout
    last_poll = now()
    while now() < deadline:
        fresh = children(supervisor) - known
        if fresh:
            pid = min(fresh)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return pid, now() - last_poll
        last_poll = now()
        time.sleep(0.0005)
    return None


# -- clients and their ledger ---------------------------------------------------------------------


@dataclass
class Session:
    """One listener connection, from its join's ack to its end."""

    listener: str
    shard: int | None
    joined_at: float
    ended_at: float | None = None
    end: str = ""  # "up" (still open at the end), "killed" (1006), "drained" (1001), ...
    received: list[tuple[str, int]] = field(default_factory=list)  # (sender, seq) in order
    notice_at: float | None = None  # __server_shutdown__ received


@dataclass
class Ledger:
    """What the clients of one class of fault did and saw."""

    # (sender, seq, when it was sent, when its ack came)
    acked: list[tuple[str, int, float, float]] = field(default_factory=list)
    unacked: int = 0  # sends whose ack never came (the connection died under them)
    sessions: list[Session] = field(default_factory=list)
    opens: int = 0
    failed_opens: int = 0
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    open_failures: dict[str, int] = field(default_factory=dict)  # by what went wrong

    def failed_open(self, exc: Exception) -> None:
        self.failed_opens += 1
        if isinstance(exc, ConnectRefused):
            what = f"refused {exc.status}" if exc.status else f"closed {exc.close_code}"
        else:
            what = type(exc).__name__
        self.open_failures[what] = self.open_failures.get(what, 0) + 1


async def open_client(url: str, stop: asyncio.Event, ledger: Ledger) -> Client | None:
    """Connect, retrying every 20 ms (the cluster may be restarting) until ``stop``."""
    while not stop.is_set():
        try:
            client = await connect(url, open_timeout=3)
        except (OSError, ConnectRefused, TimeoutError) as exc:
            ledger.failed_open(exc)
            await asyncio.sleep(0.02)
            continue
        ledger.opens += 1
        return client
    return None


async def close_quietly(client: Client) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(4):
            await client.close()


def shutting_down(client: Client) -> bool:
    return any(m.get("event") == "__server_shutdown__" for m in client.inbox.pending())


async def sender(
    name: str, url: str, room: str, stop: asyncio.Event, ledger: Ledger, *,
    interval: float, pad: str = "", count: int | None = None,
) -> None:  # fmt: skip
    """Numbered ``say`` messages, one at a time (each waits for its ack), reconnecting when
    the connection dies or the server asks it to move."""
    seq = 0
    while not stop.is_set() and (count is None or seq < count):
        client = await open_client(url, stop, ledger)
        if client is None:
            return
        try:
            while not stop.is_set() and (count is None or seq < count):
                if shutting_down(client):
                    break
                seq += 1
                sent = now()
                payload = {"room": room, "sender": name, "seq": seq, "pad": pad}
                try:
                    await client.call("say", payload, timeout=5)
                except (ConnectionClosedError, TimeoutError, ErrorReply, OSError):
                    ledger.unacked += 1
                    break
                ledger.acked.append((name, seq, sent, now()))
                if interval:
                    await asyncio.sleep(interval)
        finally:
            await close_quietly(client)


async def listener(name: str, url: str, room: str, stop: asyncio.Event, ledger: Ledger) -> None:
    """Joins ``room`` and records every ``said`` in order, one session per connection."""
    while not stop.is_set():
        client = await open_client(url, stop, ledger)
        if client is None:
            return
        try:
            await client.call("join", {"room": room}, timeout=5)
        except (ConnectionClosedError, TimeoutError, ErrorReply, OSError):
            await close_quietly(client)
            continue
        session = Session(name, client.greeting.get("shard"), now())
        ledger.sessions.append(session)
        while True:
            try:
                message = await client.inbox.take(
                    lambda m: m.get("event") not in HOUSEKEEPING, 0.2, "a message"
                )
            except TimeoutError:
                if stop.is_set():
                    session.end, session.ended_at = "up", now()
                    break
                continue
            except ConnectionClosedError as closed:
                session.ended_at = now()
                session.end = {ABNORMAL: "killed", 1001: "drained"}.get(
                    closed.code or ABNORMAL, f"closed {closed.code}"
                )
                break
            event = message.get("event")
            if event == "said":
                payload = message["payload"]
                session.received.append((payload["sender"], payload["seq"]))
            elif event == "__server_shutdown__" and session.notice_at is None:
                session.notice_at = now()
        await close_quietly(client)
        if not stop.is_set():
            await asyncio.sleep(0.02)


async def churner(url: str, stop: asyncio.Event, ledger: Ledger) -> None:
    """Connect, echo, disconnect, again and again."""
    n = 0
    while not stop.is_set():
        try:
            client = await connect(url, open_timeout=3)
        except (OSError, ConnectRefused, TimeoutError) as exc:
            ledger.failed_open(exc)
            await asyncio.sleep(0.01)
            continue
        ledger.opens += 1
        n += 1
        try:
            await client.call("echo", {"n": n}, timeout=3)
        except (ConnectionClosedError, TimeoutError, ErrorReply, OSError):
            ledger.figures["failed_echoes"] = ledger.figures.get("failed_echoes", 0) + 1
        await close_quietly(client)


class Load:
    """Listeners of one room on both shards, senders broadcasting to it, optional churn."""

    def __init__(
        self, url: str, room: str, ledger: Ledger, *, listeners: int = 8, senders: int = 3,
        interval: float = 0.01, churners: int = 0,
    ) -> None:  # fmt: skip
        self.sending = asyncio.Event()
        self.listening = asyncio.Event()
        self.ledger = ledger
        self.listener_tasks = [
            asyncio.create_task(listener(f"l{i}", url, room, self.listening, ledger))
            for i in range(listeners)
        ]
        self.sender_tasks = [
            asyncio.create_task(sender(f"s{i}", url, room, self.sending, ledger, interval=interval))
            for i in range(senders)
        ]
        self.sender_tasks += [
            asyncio.create_task(churner(url, self.sending, ledger)) for _ in range(churners)
        ]

    async def stop(self) -> None:
        """Senders first; a moment for the last messages to arrive; then the listeners."""
        self.sending.set()
        await asyncio.gather(*self.sender_tasks, return_exceptions=True)
        await asyncio.sleep(1.0)
        self.listening.set()
        await asyncio.gather(*self.listener_tasks, return_exceptions=True)


# -- the account ----------------------------------------------------------------------------------


@dataclass
class Account:
    sent: int = 0
    expected: int = 0
    lost: int = 0
    cut: int = 0
    duplicated: int = 0
    reordered: int = 0
    sessions: int = 0
    by_end: dict[str, int] = field(default_factory=dict)
    drained_lost: int = 0  # of lost: on drained connections, acked between notice and close
    drained_expected: int = 0  # of expected: the same window
    # What was lost, by message: (sender, seq, seconds from the first ack) -> the shards
    # of the sessions that missed it, one entry per session.
    lost_messages: dict[tuple[str, int, float], list[int | None]] = field(default_factory=dict)


def account(ledger: Ledger) -> Account:
    result = Account(sent=len(ledger.acked), sessions=len(ledger.sessions))
    acks = sorted(ledger.acked, key=lambda a: a[2])
    first = acks[0][3] if acks else 0.0
    for session in ledger.sessions:
        result.by_end[session.end] = result.by_end.get(session.end, 0) + 1
        end = session.ended_at if session.ended_at is not None else float("inf")
        seen: set[tuple[str, int]] = set()
        highest: dict[str, int] = {}
        for key in session.received:
            if key in seen:
                result.duplicated += 1
                continue
            seen.add(key)
            sender_name, seq = key
            if seq < highest.get(sender_name, 0):
                result.reordered += 1
            highest[sender_name] = max(highest.get(sender_name, 0), seq)
        for name, seq, sent, acked in acks:
            if sent < session.joined_at or acked > end:
                continue
            result.expected += 1
            notice = session.notice_at
            after_notice = session.end == "drained" and notice is not None and acked >= notice
            result.drained_expected += after_notice
            if (name, seq) in seen:
                continue
            if session.end == "killed":
                result.cut += 1
            else:
                result.lost += 1
                result.drained_lost += after_notice
                missed = result.lost_messages.setdefault((name, seq, acked - first), [])
                missed.append(session.shard)
    return result


# -- the faults -----------------------------------------------------------------------------------


async def kill_shards(cluster: Cluster, rounds: int, every: float) -> Ledger:
    ledger = Ledger()
    load = Load(cluster.url, "kill", ledger)
    restarts: list[float] = []
    await asyncio.sleep(2)
    for round_ in range(rounds):
        shard = round_ % 2
        pid = cluster.shard_pids()[shard]
        killed_at = now()
        os.kill(pid, signal.SIGKILL)
        back = None
        while now() - killed_at < 10 and back is None:
            for t, found in cluster.find(READY, after=killed_at):
                if int(found.group(1)) == shard and int(found.group(2)) != pid:
                    back = t - killed_at
            await asyncio.sleep(0.005)
        if back is None:
            ledger.notes.append(f"shard {shard} was not back within 10 s of its kill")
        else:
            restarts.append(back)
        await asyncio.sleep(every)
    await load.stop()
    if restarts:
        ledger.figures["restart_ms_p50"] = round(statistics.median(restarts) * 1000)
        ledger.figures["restart_ms_max"] = round(max(restarts) * 1000)
    ledger.figures["kills"] = rounds
    return ledger


async def boot_kills(cluster: Cluster, rounds: int) -> Ledger:
    """Each round kills a replacement shard in its first milliseconds: after a kill -9 on
    even rounds, during a SIGHUP reload on odd ones. A cluster that stopped is started
    again for the next round (and counted)."""
    ledger = Ledger()
    stopped = 0
    recovered: list[float] = []
    for round_ in range(rounds):
        load = Load(cluster.url, f"boot{round_}", ledger)
        await asyncio.sleep(2)
        supervisor = cluster.proc.pid
        known = children(supervisor)
        if round_ % 2 == 0:
            how = "after a kill -9"
            os.kill(cluster.shard_pids()[0], signal.SIGKILL)
        else:
            how = "during a reload"
            os.kill(supervisor, signal.SIGHUP)
        killed = await asyncio.to_thread(kill_next_child, supervisor, known, 5.0)
        if killed is None:
            ledger.notes.append(f"round {round_}: no replacement shard appeared {how}")
        else:
            ledger.notes.append(
                f"round {round_}: replacement pid {killed[0]} killed {how}, within "
                f"{killed[1] * 1000:.1f} ms of its fork"
            )
        back = await cluster.wait_ready(15)
        await asyncio.sleep(1)
        if not cluster.alive():
            stopped += 1
            ledger.notes.append(
                f"round {round_}: the supervisor exited with code {cluster.proc.returncode} "
                "and took the cluster down"
            )
            await load.stop()
            cluster.stop()
            cluster.start()
            continue
        if back is None:
            ledger.notes.append(f"round {round_}: the cluster was not ready within 15 s")
        else:
            recovered.append(back)
        await asyncio.sleep(2)
        await load.stop()
    ledger.figures["boot_kills"] = rounds
    ledger.figures["cluster_stopped"] = stopped
    if recovered:
        ledger.figures["ready_again_ms_max"] = round(max(recovered) * 1000)
    return ledger


async def reloads(cluster: Cluster, rounds: int, every: float) -> Ledger:
    ledger = Ledger()
    load = Load(cluster.url, "reload", ledger, churners=4)
    durations: list[float] = []
    await asyncio.sleep(2)
    for _ in range(rounds):
        before = set(cluster.shard_pids().values())
        started = now()
        os.kill(cluster.proc.pid, signal.SIGHUP)
        done = None
        while now() - started < 30 and done is None:
            fresh = {int(m.group(1)) for _, m in cluster.find(READY, after=started)
                     if int(m.group(2)) not in before}  # fmt: skip
            if fresh == {0, 1}:
                done = now() - started
            await asyncio.sleep(0.01)
        if done is None:
            ledger.notes.append("a reload did not replace both shards within 30 s")
        else:
            durations.append(done)
        await asyncio.sleep(every)
    await load.stop()
    ledger.figures["reloads"] = rounds
    if durations:
        ledger.figures["reload_s_max"] = round(max(durations), 2)
    return ledger


class StalledReader:
    """A member whose socket receive buffer is 4 KiB and that stops reading after its join."""

    def __init__(self, port: int, room: str) -> None:
        self.port = port
        self.room = room
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.messages = 0

    async def join(self) -> None:
        loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        await loop.sock_sendall(self.sock, self.ws.send(Request(host="127.0.0.1", target="/ws")))
        await self._until(lambda e: isinstance(e, TextMessage) and "__connect__" in e.data)
        join = json.dumps({"event": "join", "payload": {"room": self.room}, "ack": 1})
        await loop.sock_sendall(self.sock, self.ws.send(TextMessage(data=join)))
        await self._until(lambda e: isinstance(e, TextMessage) and "__ack__" in e.data)

    async def _until(self, wanted: Callable[[Any], bool], timeout: float = 5) -> Any:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(self.sock, 65536)
                self.ws.receive_data(data or None)
                for event in self.ws.events():
                    if isinstance(event, TextMessage) and '"said"' in event.data:
                        self.messages += 1
                    if wanted(event):
                        return event
                if not data:
                    return None

    async def read_to_the_end(self) -> int | None:
        """Read again: the close code found after the data (None: TCP ended without one)."""
        try:
            event = await self._until(lambda e: isinstance(e, CloseConnection), timeout=15)
        except (TimeoutError, OSError):
            event = None
        self.sock.close()
        return event.code if isinstance(event, CloseConnection) else None


async def stalled_readers(cluster: Cluster, rounds: int, stall: float) -> Ledger:
    ledger = Ledger()
    codes: list[int | None] = []
    for round_ in range(rounds):
        room = f"flood{round_}"
        stalled = StalledReader(cluster.port, room)
        await stalled.join()
        listening, sending = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(listener("reader", cluster.url, room, listening, ledger))
        await asyncio.sleep(0.5)
        # About 4 MiB to the room: well past the 1 MiB --max-outbound of the stalled member.
        await sender("flooder", cluster.url, room, sending, ledger, interval=0,
                     pad="x" * 4096, count=1000)  # fmt: skip
        await asyncio.sleep(stall)
        code = await stalled.read_to_the_end()
        codes.append(code)
        ledger.notes.append(
            f"round {round_}: the stalled member read {stalled.messages} messages, then "
            + (
                f"close code {code}"
                if code not in (None, ABNORMAL)
                else "a TCP end without a close frame (1006)"
            )
        )
        listening.set()
        await reader
    ledger.figures["stalled_readers"] = rounds
    ledger.figures["got_4008"] = sum(code == 4008 for code in codes)
    return ledger


# -- the report -----------------------------------------------------------------------------------


def report(results: dict[str, Ledger], started: float, seconds: float) -> str:
    lines = [
        f"Fault campaign, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{seconds:.0f} s, 2 shards, {os.cpu_count()} cores.",
        "",
        "| class | sent (acked) | deliveries expected | lost | duplicated | reordered | "
        "cut by a kill (in flight) | sessions by end | opens (failed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ledger in results.items():
        a = account(ledger)
        ends = ", ".join(f"{k} {v}" for k, v in sorted(a.by_end.items()))
        lost = f"{a.lost}"
        if a.drained_expected:
            lost += f" ({a.drained_lost} of {a.drained_expected} after the notice)"
        lines.append(
            f"| {name} | {a.sent} | {a.expected} | {lost} | {a.duplicated} | {a.reordered} | "
            f"{a.cut} | {ends} | {ledger.opens} ({ledger.failed_opens}) |"
        )
    lines.append("")
    for name, ledger in results.items():
        figures = ", ".join(f"{k} {v}" for k, v in ledger.figures.items())
        lines.append(f"- **{name}**: {figures}; unacked sends {ledger.unacked}.")
        if ledger.open_failures:
            failures = ", ".join(f"{k}: {v}" for k, v in sorted(ledger.open_failures.items()))
            lines.append(f"  - failed opens: {failures}")
        lines.extend(f"  - {note}" for note in ledger.notes)
        lost = account(ledger).lost_messages
        if lost:
            shown = ", ".join(
                f"{sender}#{seq} acked at {at:.2f} s, missed by {len(shards)} member(s) on "
                f"shard(s) {'/'.join(str(s) for s in sorted(set(shards), key=str))}"
                for (sender, seq, at), shards in list(lost.items())[:12]
            )
            more = f" and {len(lost) - 12} more" if len(lost) > 12 else ""
            lines.append(f"  - lost: {shown}{more}")
    return "\n".join(lines) + "\n"


async def recovery(args: argparse.Namespace) -> str:
    """The recovery scenario at scale; its report section."""
    import recoverykit
    from clusterkit import ClusterProcess

    cluster = ClusterProcess(
        [recoverykit.APP, "--workers", "2", "--port", "0", "--graceful-timeout", "5"],
        cwd=recoverykit.APPS,
        env={"PYTHONPATH": str(recoverykit.APPS)},
    )
    try:
        cluster.wait_announced(60)
        load = args.recovery_load
        kills, reloads = args.recovery_kills, args.recovery_reloads
        kinds: list[str] = []  # alternating, kills first
        while kills or reloads:
            if kills:
                kinds.append("kill")
                kills -= 1
            if reloads:
                kinds.append("reload")
                reloads -= 1
        faults: list[tuple[float, recoverykit.Fault]] = []
        for n, kind in enumerate(kinds):
            at = load * (n + 1) / (len(kinds) + 1)
            if kind == "kill":
                faults.append((at, recoverykit.kill_shard(cluster, n % 2)))
            else:
                faults.append((at, recoverykit.reload(cluster)))
        config = recoverykit.Config(
            members=args.recovery_members,
            rate=args.recovery_rate,
            load=load,
            drop_window=(1.0, load - 2.0),
            settle=60.0,
        )
        outcome = await recoverykit.run_scenario([cluster], faults, config)
    finally:
        cluster.kill()
    problems = recoverykit.verdict(outcome)
    lines = [
        "",
        "Recovery (tests/support/recoverykit.py at scale): " + recoverykit.summary(outcome) + ".",
        "",
        f"- broken guarantees: {len(problems)}",
    ]
    lines.extend(f"  - {problem}" for problem in problems[:20])
    if len(problems) > 20:
        lines.append(f"  - and {len(problems) - 20} more")
    return "\n".join(lines) + "\n"


async def campaign(args: argparse.Namespace) -> str:
    only = set(args.only or CLASSES)
    started_wall, started = time.time(), now()
    results: dict[str, Ledger] = {}
    if only - {"recovery"}:
        cluster = Cluster(free_port(), [])
        cluster.start()
        try:
            if "kill" in only:
                print("kill -9 under broadcast load ...", file=sys.stderr, flush=True)
                results["kill -9"] = await kill_shards(cluster, args.kills, args.every)
            if "boot-kill" in only:
                print("boot kills ...", file=sys.stderr, flush=True)
                results["boot kill"] = await boot_kills(cluster, args.boot_kills)
            if "reload" in only:
                print("reloads under churn ...", file=sys.stderr, flush=True)
                results["reload"] = await reloads(cluster, args.reloads, args.every)
            if "stalled" in only:
                print("stalled readers ...", file=sys.stderr, flush=True)
                results["stalled reader"] = await stalled_readers(cluster, args.stalled, args.stall)
        finally:
            cluster.stop()
    recovered = ""
    if "recovery" in only:
        print("recovery through drops, kills and reloads ...", file=sys.stderr, flush=True)
        recovered = await recovery(args)
    if not results:  # the recovery class alone: no table of the others
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started_wall))
        return f"Fault campaign, {when}, {now() - started:.0f} s, {os.cpu_count()} cores.\n" + (
            recovered
        )
    return report(results, started_wall, now() - started) + recovered


CLASSES = ("kill", "boot-kill", "reload", "stalled", "recovery")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8, help="kill -9 rounds (default 8)")
    parser.add_argument("--every", type=float, default=8.0, help="seconds between faults")
    parser.add_argument("--boot-kills", type=int, default=4, help="boot kill rounds (default 4)")
    parser.add_argument("--reloads", type=int, default=6, help="SIGHUP rounds (default 6)")
    parser.add_argument("--stalled", type=int, default=3, help="stalled reader rounds (3)")
    parser.add_argument(
        "--stall",
        type=float,
        default=6.0,
        help="seconds the stalled member stays stalled after the flood; past the server's "
        "5 s close timeout by default, the hard case (default 6)",
    )
    parser.add_argument(
        "--recovery-members", type=int, default=400, help="recovery: clients in rooms (400)"
    )
    parser.add_argument(
        "--recovery-rate", type=float, default=20.0, help="recovery: shouts/s per room (20)"
    )
    parser.add_argument(
        "--recovery-load", type=float, default=60.0, help="recovery: seconds of load (60)"
    )
    parser.add_argument("--recovery-kills", type=int, default=3, help="recovery: kill -9s (3)")
    parser.add_argument(
        "--recovery-reloads", type=int, default=2, help="recovery: SIGHUP reloads (2)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=CLASSES, help="run only these classes (default: all)"
    )
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    text = asyncio.run(campaign(args))
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
