"""``socketspec-cluster APP --reload``: a changed source file of the app's package restarts
the shard with the new code; a change that does not import keeps the old shard serving and
says why; ``--reload`` with ``--workers`` above 1 is refused unless asked for. Without
``--reload``, a SIGHUP whose code does not import keeps every old shard serving too."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import textwrap
import time
from pathlib import Path

from clusterkit import StartCluster, is_running, run_cli

from socketspec.client import connect

HANDLERS = """
from typing import Any

from socketspec import Connection, SocketApp

app = SocketApp()


@app.on("version")
async def version(conn: Connection, payload: dict[str, Any]) -> str:
    return {version!r}
"""

WATCHING = re.compile(r"reloading when one of (\d+) source file\(s\) changes")


def write_package(root: Path, version: str, stamp: float) -> Path:
    package = root / "devapp"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    handlers = package / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLERS.format(version=version)))
    os.utime(handlers, (stamp, stamp))
    return handlers


async def version_served(url: str) -> str:
    async with connect(url, open_timeout=10) as client:
        answer = await client.call("version", timeout=10)
    assert isinstance(answer, str)
    return answer


async def test_a_changed_handler_file_restarts_the_shard_with_the_new_code(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    stamp = time.time()
    handlers = write_package(tmp_path, "v1", stamp)
    cluster = start_cluster("devapp.handlers:app", 1, "--reload", cwd=tmp_path)
    deadline = time.monotonic() + 10
    while not (watching := WATCHING.search(cluster.stdout_text())):
        assert time.monotonic() < deadline, cluster.stdout_text()
        await asyncio.sleep(0.02)
    assert int(watching.group(1)) == 2  # __init__.py and handlers.py
    first = cluster.pids[0]
    assert await version_served(cluster.url()) == "v1"

    # A change that does not import: the old shard keeps serving, the log says why.
    handlers.write_text("this is not python(\n")
    os.utime(handlers, (stamp + 2, stamp + 2))
    await cluster.wait_stderr(
        re.compile(r"reload \(.*handlers\.py changed\) failed, keeping the running code: "),
        lambda m: True,
        10,
    )
    assert await version_served(cluster.url()) == "v1"
    assert is_running(first)

    write_package(tmp_path, "v2", stamp + 4)
    second = await cluster.wait_ready(0, [first], timeout=20)
    deadline = time.monotonic() + 20
    while is_running(first):
        assert time.monotonic() < deadline, "the old shard did not stop"
        await asyncio.sleep(0.02)
    assert await version_served(cluster.url()) == "v2"
    assert is_running(second) and cluster.proc.poll() is None


def test_reload_with_several_workers_is_refused_in_one_line(tmp_path: Path) -> None:
    write_package(tmp_path, "v1", time.time())
    run = run_cli(["devapp.handlers:app", "--reload", "--workers", "2"], cwd=tmp_path)
    assert run.code == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "--reload-any-workers" in run.stderr, run.stderr


async def test_reload_any_workers_reloads_every_shard(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    stamp = time.time()
    write_package(tmp_path, "v1", stamp)
    cluster = start_cluster(
        "devapp.handlers:app", 2, "--reload", "--reload-any-workers", cwd=tmp_path
    )
    old = list(cluster.pids)
    write_package(tmp_path, "v2", stamp + 2)
    new = [await cluster.wait_ready(shard, old, timeout=20) for shard in (0, 1)]
    assert not set(new) & set(old)
    deadline = time.monotonic() + 20
    while any(is_running(pid) for pid in old):
        assert time.monotonic() < deadline, "the old shards did not stop"
        await asyncio.sleep(0.02)
    for _ in range(4):
        assert await version_served(cluster.url()) == "v2"


async def test_a_sighup_whose_code_does_not_import_keeps_every_old_shard(
    start_cluster: StartCluster, tmp_path: Path
) -> None:
    stamp = time.time()
    handlers = write_package(tmp_path, "v1", stamp)
    cluster = start_cluster("devapp.handlers:app", 2, cwd=tmp_path)
    old = list(cluster.pids)
    handlers.write_text("from nowhere import nothing\n")
    cluster.send(signal.SIGHUP)
    await cluster.wait_stderr(
        re.compile(
            r"reload \(SIGHUP\) failed, keeping the running code: .*"
            r"ModuleNotFoundError: No module named 'nowhere'"
        ),
        lambda m: True,
        10,
    )
    for _ in range(4):
        assert await version_served(cluster.url()) == "v1"
    assert all(is_running(pid) for pid in old) and cluster.proc.poll() is None
    assert " ready (pid " not in cluster.stderr_text().split("failed, keeping")[1]

    write_package(tmp_path, "v2", stamp + 2)
    cluster.send(signal.SIGHUP)
    new = [await cluster.wait_ready(shard, old, timeout=20) for shard in (0, 1)]
    deadline = time.monotonic() + 20
    while any(is_running(pid) for pid in old):
        assert time.monotonic() < deadline, "the old shards did not stop"
        await asyncio.sleep(0.02)
    assert all(is_running(pid) for pid in new)
    for _ in range(4):
        assert await version_served(cluster.url()) == "v2"
