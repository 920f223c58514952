"""The generated TypeScript module type-checks the real browser client: ``tsc --noEmit``
(the npm registry's TypeScript, installed by ``make js-deps`` into ``.cache/jsclient``)
compiles usages of ``apps/typed_app.py``'s types with ``clients/js/src/index.ts``, imported
as ``socketspec-client`` the way an app imports the package. It accepts the correct usage
(call, emit, on, once, off, the client's own events, a second namespace, the untyped
client) and rejects each wrong one exactly where a ``// tsc-error: <text>`` comment says:
the same lines, each with its message. The module comes from the real command, in its own
process.
"""

from __future__ import annotations

import json
import re
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
CLIENT_SOURCE = ROOT / "clients" / "js" / "src" / "index.ts"
EXPECTED = re.compile(r"// tsc-error: (.+)$")
# file(line,col): error TS1234: message
DIAGNOSTIC = re.compile(r"^(?P<file>[^(\s]+)\((?P<line>\d+),\d+\): error TS\d+: (?P<message>.*)$")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the generated ``app.ts`` beside the usage files, and a tsconfig
    resolving ``socketspec-client`` to the client's source."""
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
    config = {
        "compilerOptions": {
            "noEmit": True,
            "strict": True,
            "target": "es2022",
            "module": "esnext",
            "moduleResolution": "bundler",
            "lib": ["es2022", "dom"],
            "paths": {"socketspec-client": [str(CLIENT_SOURCE)]},
        },
    }
    (directory / "tsconfig.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def tsc(project: Path, usage: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js, then run `make js-deps`")
    if not TSC.is_file():
        pytest.fail(f"TypeScript is not installed at {TSC}: run `make js-deps`")
    # A per-usage project extending the shared one: only app.ts and that usage are compiled.
    (project / f"tsconfig.{usage}.json").write_text(
        json.dumps({"extends": "./tsconfig.json", "files": ["app.ts", usage]}), encoding="utf-8"
    )
    return subprocess.run(
        [node, str(TSC), "-p", f"tsconfig.{usage}.json", "--pretty", "false"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def expected_errors(usage: str) -> dict[int, str]:
    """Line number -> the message fragment its ``// tsc-error:`` comment promises."""
    lines = (TYPED / usage).read_text(encoding="utf-8").splitlines()
    found = {n: EXPECTED.search(line) for n, line in enumerate(lines, start=1)}
    return {n: match.group(1).strip() for n, match in found.items() if match}


def reported_errors(output: str) -> dict[tuple[str, int], list[str]]:
    errors: dict[tuple[str, int], list[str]] = {}
    for line in output.splitlines():
        match = DIAGNOSTIC.match(line)
        if match:
            key = (match["file"], int(match["line"]))
            errors.setdefault(key, []).append(match["message"])
    return errors


def assert_fails_where_marked(project: Path, usage: str) -> None:
    expected = expected_errors(usage)
    assert expected, f"{usage} marks no expected error"
    done = tsc(project, usage)
    assert done.returncode != 0, done.stdout
    reported = reported_errors(done.stdout)
    # Only this usage's marked lines fail: not the client, not app.ts, not another line.
    assert set(reported) == {(usage, n) for n in expected}, done.stdout
    for n, fragment in expected.items():
        # A message may span the following indented lines; the first one names the fault.
        assert any(fragment in m for m in reported[(usage, n)]), (n, fragment, done.stdout)


def test_the_generated_types_compile_with_a_correct_client(project: Path) -> None:
    done = tsc(project, "usage_ok.ts")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_payload_with_a_wrong_field_or_event_does_not_compile(project: Path) -> None:
    assert_fails_where_marked(project, "usage_wrong_field.ts")


def test_a_wrong_type_a_wrong_enum_value_and_a_misused_ack_do_not_compile(
    project: Path,
) -> None:
    assert_fails_where_marked(project, "usage_wrong_types.ts")


def test_a_listener_misusing_its_payload_does_not_compile(project: Path) -> None:
    assert_fails_where_marked(project, "usage_wrong_listener.ts")


def test_the_markers_are_read_from_the_usages() -> None:
    # The failing cases above are only as good as their markers: each usage has some.
    assert sorted(len(expected_errors(u.name)) for u in TYPED.glob("usage_wrong_*.ts")) == [
        4,
        4,
        5,
    ]
