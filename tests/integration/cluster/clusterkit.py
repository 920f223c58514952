"""Helpers for the cluster over real processes: a ``socketspec-cluster`` subprocess whose
stdout and stderr are read by threads, a pool of clients placed on chosen shards, tokens; and
for several nodes sharing rooms, a real ``redis-server``, clusters started against it, and
a TCP balancer in front of nodes (or of Redis) that a test can cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import jwt
from prometheus_client.parser import text_string_to_metric_families
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request, TextMessage

from socketspec.client import Client, connect

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
REPO = HERE.parents[2]

# Shared with apps/cluster_rooms_app.py (which cannot import this module).
JWT_SECRET = "cluster-integration-secret-0123456789"

ANNOUNCE = re.compile(
    r"socketspec-cluster: (\d+) shard\(s\) \(pids ([\d, ]+)\) listening on "
    r"ws://127\.0\.0\.1:(\d+)(/\S*)"
)
READY = re.compile(r"shard (\d+) ready \(pid (\d+)\)")
RESTARTING = re.compile(
    r"shard (\d+) \(pid (\d+)\) exited with code (-?\d+); restarting in ([\d.]+)s"
)
BOOT_FAILED = re.compile(
    r"shard (\d+) \(pid (\d+)\) failed to boot \((.*)\); restarting in ([\d.]+)s"
)


StartCluster = Callable[..., "ClusterProcess"]


def token_for(user: str, role: str = "member") -> str:
    return jwt.encode({"sub": user, "role": role}, JWT_SECRET, algorithm="HS256")


def process_state(pid: int) -> str | None:
    """The state letter of ``pid`` from /proc (``Z`` for a zombie), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def is_running(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def children(pid: int) -> set[int]:
    """The child processes of ``pid`` (its shards, for a supervisor)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(child) for child in text.split()}


def kill_next_child(parent: int, known: Iterable[int], timeout: float) -> int:
    """SIGKILL the first child of ``parent`` not in ``known`` as soon as it appears (polled
    every 0.2 ms, so within its first milliseconds: while it boots); its pid."""
    old = set(known)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children(parent) - old:
            os.kill(child, signal.SIGKILL)
            return child
        time.sleep(0.0002)
    raise AssertionError(f"no new child of {parent} within {timeout:g}s")


def session_members(sid: int) -> list[int]:
    """Every live process of the session ``sid`` (the supervisor started a new session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # fields: state ppid pgrp session ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


class ClusterProcess:
    """``python -m socketspec.server.cli ARGS`` in its own session, with a private TMPDIR (its
    run directory of link sockets) that is removed by ``kill()``."""

    def __init__(
        self,
        args: list[str],
        *,
        cwd: Path | str = APPS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="ssc-")  # short: Unix socket paths are bounded
        full_env = dict(os.environ)
        full_env.update(
            {
                "TMPDIR": self.tmpdir,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(APPS), full_env.get("PYTHONPATH", "")) if p
                ),
            }
        )
        for name in list(full_env):
            if name.startswith("SOCKETSPEC_"):
                del full_env[name]
        full_env.update(env or {})
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "socketspec.server.cli", *args],
            cwd=str(cwd),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self._announced = threading.Event()
        self.port = 0
        self.path = ""
        self.pids: list[int] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- output ----------------------------------------------------------------------------------

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._lock:
                sink.append(line)
            found = ANNOUNCE.search(line)
            if found and not self._announced.is_set():
                self.pids = [int(p) for p in found.group(2).split(",")]
                self.port = int(found.group(3))
                self.path = found.group(4)
                assert len(self.pids) == int(found.group(1))
                self._announced.set()
        if sink is self.stdout:
            self._announced.set()  # EOF: wake the waiter, which sees no port

    def stderr_text(self) -> str:
        with self._lock:
            return "".join(self.stderr)

    def stdout_text(self) -> str:
        with self._lock:
            return "".join(self.stdout)

    def wait_announced(self, timeout: float = 30.0) -> None:
        self._announced.wait(timeout)
        assert self.port, (
            f"the cluster did not announce itself: rc={self.proc.poll()} "
            f"stdout={self.stdout_text()!r} stderr={self.stderr_text()[-3000:]}"
        )

    def url(self, namespace: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}{namespace}"

    async def wait_stderr(
        self, pattern: re.Pattern[str], accept: Callable[[re.Match[str]], bool], timeout: float
    ) -> re.Match[str]:
        """The first stderr line matching ``pattern`` for which ``accept`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                lines = list(self.stderr)
            for line in lines:
                found = pattern.search(line)
                if found and accept(found):
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no stderr line matching {pattern.pattern!r} within {timeout:g}s:\n"
                    + "".join(lines)[-3000:]
                )
            await asyncio.sleep(0.02)

    async def wait_ready(self, shard: int, not_pids: Iterable[int], timeout: float) -> int:
        """The pid of the next instance of ``shard`` that reports ready, not one of
        ``not_pids``."""
        old = set(not_pids)
        found = await self.wait_stderr(
            READY, lambda m: int(m.group(1)) == shard and int(m.group(2)) not in old, timeout
        )
        return int(found.group(2))

    # -- process ---------------------------------------------------------------------------------

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait_exit(self, timeout: float) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def leftovers(self) -> list[int]:
        """Processes of the cluster's session still alive (the supervisor's shards)."""
        return session_members(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the supervisor and every process of its session; remove its TMPDIR."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class Run(NamedTuple):
    code: int
    stderr: str
    took: float  # seconds
    leftovers: list[int]  # processes of its session still alive after it exited


def run_cli(args: list[str], *, timeout: float = 30.0, **kwargs: Any) -> Run:
    """Run the command line to its end."""
    cluster = ClusterProcess(args, **kwargs)
    try:
        code = cluster.proc.wait(timeout)
        took = time.monotonic() - cluster.started
        for thread in cluster._threads:
            thread.join(5)
        return Run(code, cluster.stderr_text(), took, cluster.leftovers())
    finally:
        cluster.kill()


class Pool:
    """Clients of one cluster, closed together at the end: ``async with Pool(url) as pool``.

    ``token`` makes each client's JWT from a counter (``user-1``, ``user-2``, ...; the prefix
    is ``users``), so every client has its own user id (``pool.user_of[client]``)."""

    def __init__(self, url: str, *, token: bool = False, users: str = "user") -> None:
        self.url = url
        self.token = token
        self.users = users  # user ids are f"{users}-{n}": pools of several nodes stay apart
        self.clients: list[Client] = []
        self.user_of: dict[str, str] = {}  # conn_id -> user id
        self._count = 0

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_all()

    async def close_all(self) -> None:
        clients, self.clients = self.clients, []
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def open(self, url: str | None = None) -> Client:
        self._count += 1
        user = f"{self.users}-{self._count}"
        client = await connect(
            url or self.url, token=token_for(user) if self.token else None, open_timeout=10
        )
        self.clients.append(client)
        assert client.conn_id is not None
        self.user_of[client.conn_id] = user
        return client

    async def discard(self, client: Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
        await client.close()

    async def on_shards(
        self,
        shards: Iterable[int] | Mapping[int, int],
        per_shard: int = 1,
        *,
        max_attempts: int = 200,
    ) -> dict[int, list[Client]]:
        """Open connections until each of ``shards`` has ``per_shard`` of them (or, given a
        mapping, its own number); the others are closed. Fails after ``max_attempts``."""
        if isinstance(shards, Mapping):
            wanted = dict(shards)
        else:
            wanted = {shard: per_shard for shard in shards}
        placed: dict[int, list[Client]] = {shard: [] for shard in wanted}
        extra: list[Client] = []
        attempts = 0
        while any(len(placed[s]) < n for s, n in wanted.items()):
            attempts += 1
            assert attempts <= max_attempts, (
                f"{max_attempts} connections did not cover the shards: "
                f"{ {s: len(c) for s, c in placed.items()} }"
            )
            client = await self.open()
            shard = client.greeting["shard"]
            if shard in placed and len(placed[shard]) < wanted[shard]:
                placed[shard].append(client)
            else:
                extra.append(client)
                self.clients.remove(client)
        await asyncio.gather(*(c.close() for c in extra), return_exceptions=True)
        return placed


async def join_and_drop(port: int, path: str, token: str, room: str) -> int:
    """Open a WebSocket with wsproto over a bare TCP stream, read the greeting, send a
    ``join`` of ``room`` and reset the connection at once (no closing handshake), so the
    server sees the connection drop while the join is in flight. Returns the shard that
    served it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host=f"127.0.0.1:{port}", target=f"{path}?token={token}")))
    greeting: dict[str, Any] | None = None
    async with asyncio.timeout(10):
        while greeting is None:
            data = await reader.read(65536)
            assert data, "the server closed before its greeting"
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, TextMessage):
                    greeting = json.loads(event.data)
    assert greeting["event"] == "__connect__", greeting
    message = json.dumps({"event": "join", "payload": {"room": room}, "ack": 1})
    writer.write(ws.send(TextMessage(data=message)))
    await writer.drain()
    writer.transport.abort()
    return int(greeting["payload"]["shard"])


async def collect(
    client: Client, event: str, sink: list[Any], stop: asyncio.Event, poll: float = 0.2
) -> None:
    """Append every ``event`` payload ``client`` receives to ``sink`` until ``stop`` is set
    (and nothing more arrives) or the connection closes."""
    while True:
        try:
            sink.append(await client.receive(event, timeout=poll))
        except TimeoutError:
            if stop.is_set():
                return
        except Exception:  # closed
            return


async def receive_n(client: Client, event: str, count: int, timeout: float) -> list[Any]:
    """The next ``count`` payloads of ``event`` (all of them within ``timeout`` in total)."""
    out: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(out) < count:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            out.append(await client.receive(event, timeout=max(remaining, 0.01)))
        except TimeoutError:
            raise AssertionError(
                f"{client.conn_id} got {len(out)} of {count} {event!r} within {timeout:g}s"
            ) from None
    return out


# -- several nodes sharing a Redis -----------------------------------------------------------------

NODE_LINE = re.compile(r"socketspec-cluster: node ([0-9a-f]{8}) shares rooms through (\S+)")
METRICS_LINE = re.compile(r"socketspec-cluster: metrics at (http://127\.0\.0\.1:\d+/metrics)")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A real ``redis-server`` on 127.0.0.1 that keeps nothing on disk (no RDB, no AOF, its
    directory a temporary one). ``stop()`` then ``start()`` brings it back on the same port,
    empty. ``kill()`` (idempotent) is for the end of a test."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.directory = directory
        self.port = port or free_port()
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it answers PING."""
        assert not self.running(), "redis-server is already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                cwd=str(self.directory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"redis-server on port {self.port} did not answer PING within {timeout:g}s "
                    f"(rc={self.proc.returncode}):\n{self.log_text()[-2000:]}"
                )
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (a clean shutdown, which saves nothing here) and wait for the exit."""
        assert self.proc is not None and self.running(), "redis-server is not running"
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"redis-server did not stop within {timeout:g}s") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Node:
    """One announced ``socketspec-cluster`` of several sharing a Redis: its node id (from its
    "node ... shares rooms through ..." line) and its /metrics URL."""

    def __init__(self, process: ClusterProcess, node_id: str, redis_url: str, metrics_url: str):
        self.process = process
        self.node_id = node_id
        self.redis_url = redis_url
        self.metrics_url = metrics_url

    def url(self, namespace: str = "") -> str:
        return self.process.url(namespace)

    def kill(self) -> None:
        self.process.kill()

    def scrape(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of the node's /metrics (summed over its shards), by name and labels."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text = response.read().decode()
        out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out

    async def metric(self, name: str, **labels: str) -> float:
        """One sample's value (0 when not exposed yet)."""
        samples = await asyncio.to_thread(self.scrape)
        return samples.get((name, frozenset(labels.items())), 0.0)

    async def wait_metric(
        self, name: str, check: Callable[[float], bool], timeout: float = 10.0, **labels: str
    ) -> float:
        """Scrape until ``check(value)`` holds (shards flush their tallies once a second)."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.metric(name, **labels)
            if check(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name}{labels or ''} on node {self.node_id} still {found} after {timeout:g}s"
                )
            await asyncio.sleep(0.1)


def node_of(conn_id: str) -> str:
    """The node id a connection id carries, read the way the cluster store routes by it."""
    from types import SimpleNamespace

    from socketspec.cluster.store import ClusterRoomStore

    # locate() reads only ``self.node`` (non-empty: a store that uses Redis).
    located = ClusterRoomStore.locate(SimpleNamespace(node="?"), conn_id)  # type: ignore[arg-type]
    assert located is not None, f"not a cluster connection id: {conn_id!r}"
    return located[0]


def _wait_node_lines(process: ClusterProcess, timeout: float) -> tuple[str, str, str]:
    deadline = time.monotonic() + timeout
    while True:
        text = process.stdout_text()
        node = NODE_LINE.search(text)
        metrics_at = METRICS_LINE.search(text)
        if node and metrics_at:
            return node.group(1), node.group(2), metrics_at.group(1)
        assert time.monotonic() < deadline, (
            f"no 'node ... shares rooms' and 'metrics at' lines within {timeout:g}s: "
            f"stdout={text!r} stderr={process.stderr_text()[-3000:]}"
        )
        time.sleep(0.02)


def start_nodes(
    count: int,
    app: str,
    workers: int,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> list[Node]:
    """Start ``count`` clusters at once (each on its own free port, metrics on a free port),
    wait until every one announced itself, its node id and its metrics; on any failure every
    one of them is killed."""
    args = [app, "--workers", str(workers), "--port", "0", "--graceful-timeout", "2", *extra]
    processes: list[ClusterProcess] = []
    try:
        for _ in range(count):
            processes.append(ClusterProcess(args, env=env))
        nodes = []
        for process in processes:
            process.wait_announced(timeout)
            nodes.append(Node(process, *_wait_node_lines(process, 10)))
    except BaseException:
        for process in processes:
            process.kill()
        raise
    return nodes


class Balancer:
    """A TCP load balancer in front of the nodes: a new connection goes to the first
    backend that accepts it; bytes are piped both ways; either end closing closes the
    other. A backend's death ends its connections, and new ones go to the next."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (again, on the same port after ``close``)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and cut every connection through it."""
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            break
        else:
            writer.transport.abort()
            return
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
                self._pipes.discard(task)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
