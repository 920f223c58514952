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
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection

READY_TIMEOUT = 10.0
BIN = Path(sys.executable).parent
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


class UvicornProcess:
    """``uvicorn ARGS --port 0`` in a subprocess; ``port`` is read from its log line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.log = cwd / "uvicorn.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [str(BIN / "uvicorn"), *args, "--host", "127.0.0.1", "--port", "0"],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = RUNNING.search(self.log.read_text())
            if match:
                self.port = int(match.group(1))
                return self.port
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("uvicorn did not start:\n" + self.log.read_text()[-3000:])

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log_file.close()
        return self.process.returncode


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
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
