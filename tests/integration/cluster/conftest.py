"""Fixtures for the cluster over real processes: ``socketspec-cluster`` subprocesses (always
killed, with every shard of their session) and the entry-point handler package installed in
the running interpreter's environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

# The test modules import the helpers beside this file as a top-level module.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from clusterkit import ClusterProcess, StartCluster  # noqa: E402

HANDLER_PKG = Path(HERE) / "handler_pkg"
HANDLER_DIST = "socketspec-test-handlers"


def launch(app: str | None, workers: int | str, *extra: str, **kwargs: Any) -> ClusterProcess:
    """Start a cluster on a free port and wait for its announce line; kill it on failure."""
    args = [app] if app else []
    args += ["--workers", str(workers), "--port", "0", "--graceful-timeout", "10", *extra]
    cluster = ClusterProcess(args, **kwargs)
    try:
        cluster.wait_announced(60)
    except BaseException:
        cluster.kill()
        raise
    return cluster


@pytest.fixture
def start_cluster() -> Iterator[StartCluster]:
    """``start_cluster(APP, workers, *flags, cwd=..., env=...)`` → an announced cluster,
    SIGKILLed with all its processes at the end of the test."""
    started: list[ClusterProcess] = []

    def start(
        app: str | None, workers: int | str = 2, *extra: str, **kwargs: Any
    ) -> ClusterProcess:
        cluster = launch(app, workers, *extra, **kwargs)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.kill()


@pytest.fixture(scope="module", params=[2, 4], ids=["2-shards", "4-shards"])
def rooms_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterProcess]:
    """The rooms app on 2 and on 4 shards, shared by a module's tests (they use their own
    room names)."""
    cluster = launch("cluster_rooms_app:app", request.param)
    try:
        yield cluster
    finally:
        cluster.kill()


@pytest.fixture(scope="session")
def handler_package() -> str:
    """Install tests/integration/cluster/handler_pkg into this interpreter's environment
    (idempotent: installing the same version again replaces it); returns the dist name."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--disable-pip-version-check",
            str(HANDLER_PKG),
        ],
        check=True,
        timeout=120,
    )
    try:
        distribution(HANDLER_DIST)
    except PackageNotFoundError:  # pragma: no cover - pip said it worked
        pytest.fail(f"{HANDLER_DIST} is not installed after pip install")
    return HANDLER_DIST
