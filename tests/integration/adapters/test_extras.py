"""The fastapi extra is optional: the core and the plain ASGI entry import without it, and
the FastAPI adapter says in one line what to install. Each check runs in fresh
interpreters where importing fastapi or starlette fails, as in an install without the
extra (a ``sitecustomize`` on ``PYTHONPATH``, so that a process the command re-executes
is held to it too)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

NO_FASTAPI = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoFastAPI(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fastapi", "starlette"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoFastAPI())
    """
)


@pytest.fixture
def without_fastapi(tmp_path: Path) -> dict[str, str]:
    """The environment of an interpreter that cannot import fastapi or starlette."""
    site = tmp_path / "no-fastapi"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_FASTAPI)
    return {**os.environ, "PYTHONPATH": str(site)}


def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``argv`` in a session of its own; killed with everything it started if it is
    still running after 60 s."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate(timeout=10)
    return process.returncode, out, err


def python(code: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    return run([sys.executable, "-c", textwrap.dedent(code)], env, cwd)


def test_core_and_asgi_entry_never_import_fastapi(
    without_fastapi: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = python(
        """
        import sys
        import socketspec, socketspec.testing, socketspec.server.cli
        from socketspec.adapters.asgi import SocketASGI
        SocketASGI(socketspec.SocketApp())
        assert not any(m.split(".")[0] in ("fastapi", "starlette") for m in sys.modules)
        print("ok")
        """,
        without_fastapi,
        tmp_path,
    )
    assert (code, out.strip()) == (0, "ok"), err


def test_fastapi_adapter_without_the_extra_names_it_in_one_line(
    without_fastapi: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = python(
        """
        try:
            import socketspec.adapters.fastapi
        except ImportError as exc:
            print(exc)
        """,
        without_fastapi,
        tmp_path,
    )
    assert code == 0, err
    assert out.splitlines() == [
        "socketspec.adapters.fastapi needs FastAPI: pip install socketspec[fastapi]"
    ]


def test_the_cluster_says_it_in_one_line_for_an_app_that_mounts(
    without_fastapi: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text(
        "from socketspec import SocketApp\n"
        "from socketspec.adapters.fastapi import mount\n"
        "socket = SocketApp()\n"
    )
    code, _, err = run(
        [sys.executable, "-m", "socketspec.server.cli", "main:socket", "--port", "0"],
        without_fastapi,
        tmp_path,
    )
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "pip install socketspec[fastapi]" in lines[0]
