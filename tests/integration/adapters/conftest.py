"""Fixtures for the ASGI adapter over real sockets: uvicorn in the test's own event loop on
a free port (its signal handling left to the test runner), or in a subprocess; each is
stopped at the end of the test."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

# The test modules import the helpers beside this file as top-level modules.
# (and the shard tests' raw WebSocket client, for a client that stops reading at the socket).
HERE = Path(__file__).resolve().parent
for helpers in (str(HERE), str(HERE.parent / "server")):
    if helpers not in sys.path:
        sys.path.insert(0, helpers)

from asgikit import (  # noqa: E402
    READY_TIMEOUT,
    QuietServer,
    Running,
    ServerProcess,
    StartUvicorn,
    UvicornProcess,
    free_socket,
)


@pytest.fixture
async def start_uvicorn() -> AsyncIterator[StartUvicorn]:
    """``await start_uvicorn(asgi_app, **uvicorn.Config fields)`` → a serving uvicorn."""
    running: list[Running] = []

    async def start(app: Any, *, sndbuf: int | None = None, **settings: Any) -> Running:
        settings.setdefault("log_level", "warning")
        settings.setdefault("lifespan", "on")
        sock = free_socket(sndbuf)
        server = QuietServer(uvicorn.Config(app, **settings))
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            if loop.time() > deadline:
                raise TimeoutError("uvicorn did not start")
            await asyncio.sleep(0.01)
        entry = Running(server, task, sock.getsockname()[1])
        running.append(entry)
        return entry

    yield start
    for entry in running:
        if not entry.task.done():
            await entry.stop()


@pytest.fixture
def spawn_uvicorn() -> Iterator[Callable[..., UvicornProcess]]:
    """``spawn_uvicorn(args, cwd)`` → a UvicornProcess, stopped at the end of the test."""
    started: list[UvicornProcess] = []

    def spawn(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> UvicornProcess:
        process = UvicornProcess(args, cwd, env)
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()
        process.cleanup()


@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServerProcess]]:
    """``spawn_server(argv, cwd)`` → a ServerProcess (``{uds}`` in argv names its Unix
    socket), stopped at the end of the test."""
    started: list[ServerProcess] = []

    def spawn(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> ServerProcess:
        process = ServerProcess(argv, cwd, env)
        started.append(process)
        return process

    yield spawn
    for process in started:
        process.stop()
        process.cleanup()
