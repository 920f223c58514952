"""Fixtures of the observability tests: clusters serving ``apps/obs_app.py``, always killed
with every process of their session."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helpers beside this file and those of the cluster tests are top-level modules.
for path in (HERE, HERE.parent / "cluster"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from obskit import ObsCluster, start  # noqa: E402

StartObsCluster = Callable[..., ObsCluster]


@pytest.fixture
def start_cluster() -> Iterator[StartObsCluster]:
    """``start_cluster(APP, workers, *flags)`` → an announced cluster serving
    ``apps/obs_app.py``, SIGKILLed with all its processes at the end of the test."""
    started: list[ObsCluster] = []

    def launch(app: str, workers: int = 2, *extra: str) -> ObsCluster:
        cluster = start(app, workers, *extra)
        started.append(cluster)
        return cluster

    yield launch
    for cluster in started:
        cluster.process.kill()
