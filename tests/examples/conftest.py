"""Fixtures for the examples over real sockets: ``serve(example)`` runs an example module as
its README says, once under uvicorn (``examples.X:app``) and once on a two-shard
``socketspec-cluster`` (``examples.X:socket``), and gives the URL its clients use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The helpers beside this file, and the process helpers beside the adapter's and the
# cluster's tests.
for path in (
    str(REPO / "tests" / "examples"),
    str(REPO / "tests" / "integration" / "adapters"),
    str(REPO / "tests" / "integration" / "cluster"),
):
    if path not in sys.path:
        sys.path.insert(0, path)

from asgikit import UvicornProcess  # noqa: E402
from clusterkit import ClusterProcess  # noqa: E402
from examplekit import Serve, Served  # noqa: E402


@pytest.fixture(params=["uvicorn", "cluster"])
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """``serve("fastapi_chat", env={...}, cluster_args=[...])`` → the example running under
    the parameter's server (the cluster with ``cluster_args`` too), stopped at the end of
    the test."""
    uvicorns: list[UvicornProcess] = []
    clusters: list[ClusterProcess] = []

    def start(
        example: str, env: dict[str, str] | None = None, cluster_args: list[str] | None = None
    ) -> Served:
        if request.param == "uvicorn":
            process = UvicornProcess([f"examples.{example}:app"], REPO, env)
            uvicorns.append(process)
            port = process.wait_ready()
            return Served("uvicorn", f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}")
        cluster = ClusterProcess(
            [f"examples.{example}:socket", "--workers", "2", "--port", "0", *(cluster_args or [])],
            cwd=REPO,
            env=env,
        )
        clusters.append(cluster)
        cluster.wait_announced(60)
        return Served("cluster", cluster.url(), f"http://127.0.0.1:{cluster.port}")

    yield start
    for process in uvicorns:
        process.stop()
        process.cleanup()
    for cluster in clusters:
        cluster.kill()
