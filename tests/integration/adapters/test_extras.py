"""The fastapi extra is optional: the core and the plain ASGI entry import without it, and
the FastAPI adapter says in one line what to install. Each check runs in a fresh
interpreter where importing fastapi or starlette fails, as in an install without the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

WITHOUT_FASTAPI = textwrap.dedent(
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


def run_without_fastapi(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_FASTAPI + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_core_and_asgi_entry_never_import_fastapi() -> None:
    result = run_without_fastapi(
        """
        import socketspec, socketspec.testing, socketspec.server.cli
        from socketspec.adapters.asgi import SocketASGI
        SocketASGI(socketspec.SocketApp())
        assert not any(m.split(".")[0] in ("fastapi", "starlette") for m in sys.modules)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_fastapi_adapter_without_the_extra_names_it_in_one_line() -> None:
    result = run_without_fastapi(
        """
        try:
            import socketspec.adapters.fastapi
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "socketspec.adapters.fastapi needs FastAPI: pip install socketspec[fastapi]"
    ]
