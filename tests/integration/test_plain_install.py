"""``pip install socketspec`` with no extras: the wheel, installed alone into a fresh venv
(its core dependencies resolved by pip, nothing borrowed from this environment), starts every
command and serves a real cluster; asking it for Redis is one line naming the extra.

The venv is built once per session (a few seconds with pip's cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketspec.client import connect

REPO = Path(__file__).resolve().parents[2]
APPS = Path(__file__).resolve().parent / "apps"
ANNOUNCE = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)(/\S*)")


def clean_env() -> dict[str, str]:
    """This environment without anything that could lead the venv to the source tree."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SOCKETSPEC_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env=clean_env(), check=False, **kwargs
    )


@pytest.fixture(scope="session")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the socketspec wheel and its core dependencies only."""
    root = tmp_path_factory.mktemp("plain-install")
    wheels = root / "wheels"
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO)]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("socketspec-*.whl")
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    installed = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    return venv


def test_the_venv_has_no_extras_and_the_wheels_code(plain_venv: Path) -> None:
    """What the other tests prove holds only if the extras are really missing there and the
    package is the installed wheel, not this checkout."""
    python = str(plain_venv / "bin" / "python")
    for extra in ("redis", "jwt"):
        probe = run([python, "-c", f"import {extra}"], cwd=str(APPS))
        assert probe.returncode != 0
        assert "ModuleNotFoundError" in probe.stderr
    where = run([python, "-c", "import socketspec; print(socketspec.__file__)"], cwd=str(APPS))
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(plain_venv)


@pytest.mark.parametrize(
    "command",
    [["socketspec-cluster", "--help"], ["socketspec", "export-schema", "--help"]],
    ids=["cluster", "export-schema"],
)
def test_every_command_starts(plain_venv: Path, command: list[str]) -> None:
    done = run([str(plain_venv / "bin" / command[0]), *command[1:]], cwd=str(APPS))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert done.stderr == ""


def test_export_schema_runs(plain_venv: Path) -> None:
    done = run(
        [str(plain_venv / "bin" / "socketspec"), "export-schema", "plain_echo_app:app"],
        cwd=str(APPS),
    )
    assert done.returncode == 0, done.stderr
    assert '"echo"' in done.stdout


def test_redis_without_the_extra_is_one_line_and_exit_2(plain_venv: Path) -> None:
    done = run(
        [
            str(plain_venv / "bin" / "socketspec-cluster"),
            "plain_echo_app:app",
            "--port",
            "0",
            "--redis",
            "redis://127.0.0.1:6379/0",
        ],
        cwd=str(APPS),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'socketspec[redis]'" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.fixture
def plain_cluster(plain_venv: Path) -> Iterator[str]:
    """A 1-shard cluster of the venv serving plain_echo_app; yields its WebSocket URL."""
    env = clean_env()
    env["TMPDIR"] = str(plain_venv.parent)
    proc = subprocess.Popen(
        [
            str(plain_venv / "bin" / "socketspec-cluster"),
            "plain_echo_app:app",
            "--workers",
            "1",
            "--port",
            "0",
            "--metrics-port",
            "0",
        ],
        cwd=str(APPS),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    found: list[re.Match[str]] = []
    stderr: list[str] = []
    announced = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = ANNOUNCE.search(line)
            if match and not found:
                found.append(match)
                announced.set()
        announced.set()

    def read_stderr() -> None:
        assert proc.stderr is not None
        stderr.extend(proc.stderr)

    threads = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for thread in threads:
        thread.start()
    try:
        announced.wait(60)
        assert found, f"no announce line: rc={proc.poll()} stderr={''.join(stderr)[-2000:]}"
        yield f"ws://127.0.0.1:{found[0].group(1)}{found[0].group(2)}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        for thread in threads:
            thread.join(10)


async def test_a_cluster_from_the_plain_install_echoes(plain_cluster: str) -> None:
    async with connect(plain_cluster) as client:
        reply = await client.call("echo", {"text": "plain"}, timeout=10)
    assert reply == {"text": "plain"}
