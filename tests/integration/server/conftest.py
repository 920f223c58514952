"""Fixtures for the shard over real sockets: in-process shards on free ports, and
subprocess servers that are always killed."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The test modules import the helpers beside this file as top-level modules.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from shardkit import ServerProcess, echo_app  # noqa: E402

from socketspec import SocketApp  # noqa: E402
from socketspec.server.config import ServerConfig  # noqa: E402
from socketspec.server.shard import Shard  # noqa: E402

StartShard = Callable[..., Awaitable[Shard]]


@pytest.fixture
async def start_shard() -> AsyncIterator[StartShard]:
    """``await start_shard(app, **ServerConfig fields)`` → a started shard on a free port,
    drained at the end of the test."""
    shards: list[Shard] = []

    async def start(app: SocketApp | None, **settings: Any) -> Shard:
        settings.setdefault("graceful_timeout", 2.0)
        settings.setdefault("close_timeout", 2.0)
        shard = Shard(app, ServerConfig(host="127.0.0.1", port=0, **settings))
        await shard.start()
        shards.append(shard)
        return shard

    yield start
    for shard in shards:
        await shard.drain()


@pytest.fixture
async def echo_server(start_shard: StartShard) -> Shard:
    return await start_shard(echo_app())


@pytest.fixture
def spawn_server() -> Iterator[Callable[..., ServerProcess]]:
    """``spawn_server(*args, env=...)`` → a ServerProcess, killed at the end of the test."""
    started: list[ServerProcess] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield spawn
    for server in started:
        server.kill()
