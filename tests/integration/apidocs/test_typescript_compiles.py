"""The generated TypeScript module type-checks a client: ``tsc --noEmit`` (the npm registry's
TypeScript, installed by ``make js-deps`` into ``.cache/jsclient``) accepts a correct usage
of ``apps/typed_app.py``'s types and rejects a payload with a wrong field, a wrong enum value
and a wrong use of an ack. The module comes from the real command, in its own process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TSC = ROOT / ".cache" / "jsclient" / "node_modules" / "typescript" / "bin" / "tsc"
HERE = Path(__file__).parent
APPS = HERE / "apps"
TYPED = HERE / "typed"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the generated ``app.ts`` beside the client and usage files."""
    directory = tmp_path_factory.mktemp("typed")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "socketspec.cli",
            "export-schema",
            "typed_app:socket",
            "--format",
            "typescript",
            "--out",
            str(directory / "app.ts"),
        ],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    for source in TYPED.glob("*.ts"):
        shutil.copy(source, directory / source.name)
    return directory


def tsc(project: Path, usage: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js, then run `make js-deps`")
    if not TSC.is_file():
        pytest.fail(f"TypeScript is not installed at {TSC}: run `make js-deps`")
    return subprocess.run(
        [
            node,
            str(TSC),
            "--noEmit",
            "--strict",
            "--target",
            "es2022",
            "--module",
            "esnext",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2022,dom",
            "--pretty",
            "false",
            "app.ts",
            "client.ts",
            usage,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_generated_types_compile_with_a_correct_client(project: Path) -> None:
    done = tsc(project, "usage_ok.ts")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_payload_with_a_wrong_field_does_not_compile(project: Path) -> None:
    done = tsc(project, "usage_wrong_field.ts")
    assert done.returncode != 0
    assert "usage_wrong_field.ts(6," in done.stdout, done.stdout
    assert "'txt'" in done.stdout, done.stdout


def test_a_wrong_enum_value_and_a_misused_ack_do_not_compile(project: Path) -> None:
    done = tsc(project, "usage_wrong_types.ts")
    assert done.returncode != 0
    assert '"angry"' in done.stdout, done.stdout
    assert "Type 'number' is not assignable to type 'string'" in done.stdout, done.stdout
