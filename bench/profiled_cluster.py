"""``socketspec-cluster`` with every shard under cProfile: a bench-only hook.

    SOCKETSPEC_BENCH_PROFILE=/tmp/prof .venv/bin/python bench/echo.py --markdown /tmp/p.md
    .venv/bin/python bench/profiled_cluster.py APP [socketspec-cluster options]  # by hand

bench/echo.py starts its socketspec servers through this script (instead of the
``socketspec-cluster`` command) when ``SOCKETSPEC_BENCH_PROFILE`` names a directory.
Each shard (the forked child that serves the connections) runs under
``cProfile`` and writes ``shard-<pid>.prof`` there when it stops (read them with
``pstats``); the supervisor is not profiled (bench/echo.py reports its CPU time
from /proc). Nothing in src/ changes: the hook wraps the supervisor's
``run_worker`` from outside.

Metrics on, ``socketspec-cluster`` would re-execute itself to set
``PROMETHEUS_MULTIPROC_DIR`` before prometheus_client is imported, which would
drop the hook: this script sets that directory first (as the command would), so
no re-execution happens. With ``--no-metrics`` it sets nothing, as the command.
cProfile adds a fixed cost to every Python call, so absolute times are inflated
and small, often-called functions look dearer than they are: compare profiles
with each other, not with unprofiled runs.
"""

from __future__ import annotations

import cProfile
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

PROFILE_ENV = "SOCKETSPEC_BENCH_PROFILE"


def main() -> int:
    out = Path(os.environ.get(PROFILE_ENV) or tempfile.mkdtemp(prefix="socketspec-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    owned_dir = None
    if "--no-metrics" not in sys.argv[1:] and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Before anything imports prometheus_client (socketspec does).
        owned_dir = tempfile.mkdtemp(prefix="socketspec-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_dir

    from socketspec.cluster import supervisor
    from socketspec.server import cli

    run_worker = supervisor.run_worker

    def profiled_worker(*args: Any, **kwargs: Any) -> int:
        profile = cProfile.Profile()
        profile.enable()
        try:
            return run_worker(*args, **kwargs)
        finally:
            profile.disable()
            profile.dump_stats(out / f"shard-{os.getpid()}.prof")

    supervisor.run_worker = profiled_worker  # type: ignore[assignment]
    print(f"profiled_cluster: shard profiles go to {out}", file=sys.stderr, flush=True)
    try:
        return cli.main(sys.argv[1:])
    finally:
        if owned_dir is not None:
            shutil.rmtree(owned_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
