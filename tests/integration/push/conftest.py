"""Fixtures for pushing into real clusters: the push app served by ``socketspec-cluster``
subprocesses (the helpers of tests/integration/cluster, always killed with every shard), and
uvicorn subprocesses for the REST services that push (the helpers of
tests/integration/adapters)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for helpers in (str(HERE), str(HERE.parent / "cluster"), str(HERE.parent / "adapters")):
    if helpers not in sys.path:
        sys.path.insert(0, helpers)

from clusterkit import ClusterProcess, Node, RedisServer, start_nodes  # noqa: E402
from pushkit import ENV, KEY, PUSH_APP, launch  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterProcess]:
    """The push app on 2 shards with the publish API on (key ``KEY``), shared by a module."""
    started = launch("--api-key", KEY)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def nodes(redis_server: RedisServer) -> Iterator[list[Node]]:
    """Two nodes of 2 shards each sharing ``redis_server``, both with the publish API on."""
    started = start_nodes(
        2,
        PUSH_APP,
        2,
        "--redis",
        redis_server.url,
        "--redis-node-ttl",
        "5",
        "--api-key",
        KEY,
        env=ENV,
    )
    try:
        yield started
    finally:
        for node in started:
            node.kill()
