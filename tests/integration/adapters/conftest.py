"""Fixtures for the ASGI adapter over real sockets: uvicorn in the test's own event loop on
a free port (its signal handling left to the test runner), stopped at the end of the test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

READY_TIMEOUT = 10.0


class _Server(uvicorn.Server):
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


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def start_uvicorn() -> AsyncIterator[StartUvicorn]:
    """``await start_uvicorn(asgi_app, **uvicorn.Config fields)`` → a serving uvicorn."""
    running: list[Running] = []

    async def start(app: Any, **settings: Any) -> Running:
        settings.setdefault("log_level", "warning")
        settings.setdefault("lifespan", "on")
        sock = free_socket()
        server = _Server(uvicorn.Config(app, **settings))
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("uvicorn did not start")
            await asyncio.sleep(0.01)
        entry = Running(server, task, sock.getsockname()[1])
        running.append(entry)
        return entry

    yield start
    for entry in running:
        if not entry.task.done():
            await entry.stop()
