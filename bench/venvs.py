"""The peers' virtual environments: one per peer under .cache/bench/<peer>/, from PyPI.

Each peer of bench/run.py runs from its own environment, installed from the pinned
requirements in bench/peers/requirements-<peer>.txt, so that its dependencies never mix
with socketspec's. Creation is idempotent: an environment is (re)built only when its
stamp (a hash of the requirements file and of the Python version) differs, and what was
installed (``pip freeze``) is kept beside the stamp for the results.

    .venv/bin/python bench/venvs.py [PEER ...]   # prepare them without running anything
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = REPO / ".cache" / "bench"
PEERS = ("picows", "websockets", "python-socketio", "fastapi", "bare")
INSTALL_TIMEOUT = 900.0


class VenvError(RuntimeError):
    """A peer's environment could not be made."""


def requirements(peer: str) -> Path:
    return HERE / "peers" / f"requirements-{peer}.txt"


def location(peer: str) -> Path:
    return CACHE / peer


def python(peer: str) -> Path:
    return location(peer) / "bin" / "python"


def _stamp(peer: str) -> str:
    text = requirements(peer).read_bytes() + platform.python_version().encode()
    return hashlib.sha256(text).hexdigest()


def ensure(peer: str, log: bool = True) -> Path:
    """The peer's Python, after (re)building its environment if needed."""
    if peer not in PEERS:
        raise VenvError(f"unknown peer {peer!r}")
    venv = location(peer)
    stamp = venv / ".bench-stamp"
    if python(peer).exists() and stamp.exists() and stamp.read_text().strip() == _stamp(peer):
        return python(peer)
    if log:
        print(f"[bench] installing {peer} into {venv} ...", file=sys.stderr, flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [
            str(python(peer)),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements(peer)),
        ],
    ]
    for step in steps:
        try:
            subprocess.run(step, check=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as exc:
            raise VenvError(f"{peer}: {' '.join(step[:4])} ...: {exc}") from exc
    frozen = subprocess.run(
        [str(python(peer)), "-m", "pip", "freeze", "--disable-pip-version-check"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    (venv / "freeze.txt").write_text(frozen)
    stamp.write_text(_stamp(peer) + "\n")
    return python(peer)


def frozen(peer: str) -> list[str]:
    """What the peer's environment holds, ``name==version`` a line (empty if not built)."""
    try:
        text = (location(peer) / "freeze.txt").read_text()
    except OSError:
        return []
    return [line for line in text.splitlines() if line and not line.startswith("#")]


if __name__ == "__main__":
    for name in sys.argv[1:] or PEERS:
        print(f"{name}: {ensure(name)}")
