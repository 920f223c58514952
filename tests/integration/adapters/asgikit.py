"""Helpers for the ASGI adapter's tests over real sockets: uvicorn in the test's own loop or
in a subprocess, and the envelope as the websockets library's client sends and reads it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection

READY_TIMEOUT = 10.0
BIN = Path(sys.executable).parent
STARTED = "Application startup complete"
RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test runner keeps its own SIGINT/SIGTERM


@dataclass
class Running:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)


StartUvicorn = Callable[..., Awaitable[Running]]


def free_socket(sndbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:  # accepted sockets inherit it: a small kernel buffer fills fast
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    return sock


class ServerProcess:
    """An ASGI server's command line in a subprocess of its own session, its output in a log
    file; stopped with SIGTERM (then SIGKILL) by ``stop``."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self._log_dir = tempfile.TemporaryDirectory(prefix="asgi-")
        self.log = Path(self._log_dir.name) / "server.log"
        self.uds = str(Path(self._log_dir.name) / "server.sock")
        self._log_file = self.log.open("w")
        self.argv = [arg.replace("{uds}", self.uds) for arg in argv]
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.argv[0]} did not start:\n" + self.output()[-3000:])

    def wait_uds(self, timeout: float = 30.0) -> str:
        """Until the server accepts on its Unix socket; the socket's path."""

        def accepting() -> bool:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(self.uds)
                except OSError:
                    return False
                return True

        self.wait_for(accepting, timeout)
        return self.uds

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int:
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log_file.close()
        return self.process.returncode

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log_file.close()
        self._log_dir.cleanup()


class UvicornProcess(ServerProcess):
    """``uvicorn ARGS --port 0``; ``port`` is read from its log; ready once the lifespan has
    started."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [str(BIN / "uvicorn"), *args, "--host", "127.0.0.1", "--port", "0"], cwd, env
        )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> int:
        def announced() -> bool:
            # The port comes first (from the reloader's process with --reload), the worker's
            # lifespan after it.
            log = self.output()
            match = RUNNING.search(log)
            if match:
                self.port = int(match.group(1))
            return match is not None and STARTED in log

        self.wait_for(announced, timeout)
        return self.port

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def http_over_uds(path: str, target: str, method: str = "GET") -> tuple[int, bytes]:
    """One HTTP/1.1 request over a Unix socket; the status and the body."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return status, body


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message, a fresh recovery token skipped (clients keep those to themselves)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message.get("event") != "__recovery__":
            return message


async def recv_event(ws: ClientConnection, event: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of ``event``, skipping the others (the greeting, pings)."""
    while True:
        message = await recv(ws, timeout)
        if message["event"] == event:
            return message


async def send(ws: ClientConnection, event: str, payload: Any, ack: str | None = None) -> None:
    message: dict[str, Any] = {"event": event, "payload": payload}
    if ack is not None:
        message["ack"] = ack
    await ws.send(json.dumps(message))


async def close_code(ws: ClientConnection, timeout: float = 10.0) -> int | None:
    """Read until the server closes; the code it sent."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            async for _ in ws:
                pass
    return ws.close_code
