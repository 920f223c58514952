"""``socketspec export-schema``: the documents on stdout or in a file, in both formats; a bad
APP, flag or output file is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from socketspec.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHAT = "examples.chat:socket"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root (APP modules are relative to the current directory);
    whatever the command adds to sys.path is undone."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("CHAT_JWT_SECRET", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "error" in err


def write_module(directory: Path, source: str) -> str:
    """A uniquely named module in ``directory``; returns its name."""
    name = f"ss_cli_app_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


# -- the documents -----------------------------------------------------------------------------


def test_asyncapi_to_stdout_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "export-schema", CHAT)
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["asyncapi"] == "3.0.0"
    names = {m["name"] for m in doc["components"]["messages"].values()}
    assert {"join_room", "send_message", "new_message", "__error__"} <= names
    assert out.startswith("{\n  ")  # indented
    assert out.endswith("}\n")


def test_socketspec_format_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "export-schema", CHAT, "--format", "socketspec")
    assert code == 0
    doc = json.loads(out)
    assert {e["name"] for e in doc["events"]} >= {"join_room", "send_message"}
    assert doc["namespaces"] == ["/"]


@pytest.mark.parametrize("fmt", ["asyncapi", "socketspec"])
def test_to_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, fmt: str) -> None:
    target = tmp_path / f"{fmt}.json"
    code, out, err = run(capsys, "export-schema", CHAT, "--format", fmt, "--out", str(target))
    assert (code, out, err) == (0, "", "")
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert ("asyncapi" in doc) == (fmt == "asyncapi")
    assert ("events" in doc) == (fmt == "socketspec")


def test_typescript_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "export-schema", CHAT, "--format", "typescript")
    assert (code, err) == (0, "")
    assert "export interface SendMessage {" in out
    assert "  send_message: { payload: SendMessage; ack: Record<string, number> };" in out
    assert "  new_message: NewMessage;" in out
    target = tmp_path / "chat.ts"
    code, out, err = run(
        capsys, "export-schema", CHAT, "--format", "typescript", "--out", str(target)
    )
    assert (code, out, err) == (0, "", "")
    assert "export type ServerEvents = {" in target.read_text(encoding="utf-8")


def test_a_factory_and_where_it_is_served(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "export-schema",
        "examples.chat:create_app",
        "--host",
        "chat.example.com:443",
        "--path",
        "/live",
    )
    assert code == 0
    doc = json.loads(out)
    [server] = doc["servers"].values()
    assert server["host"] == "chat.example.com:443"
    assert [c["address"] for c in doc["channels"].values()] == ["/live"]


def test_app_modules_are_found_in_the_current_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(
        tmp_path,
        """
        from socketspec import SocketApp

        socket = SocketApp()

        @socket.on("hello", namespace="/greet", deprecated=True)
        async def hello(conn, payload: dict) -> None: ...
        """,
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "export-schema", f"{name}:socket")
    assert code == 0
    doc = json.loads(out)
    assert doc["channels"]["greet"]["address"] == "/ws/greet"
    assert doc["operations"]["greet.receive.hello"]["x-deprecated"] is True


def test_help_documents_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "export-schema" in out
    code, out, _ = run(capsys, "export-schema", "--help")
    assert code == 0
    for word in ("APP", "--format", "asyncapi", "socketspec", "--out"):
        assert word in out


# -- bad command lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["export-schema", "no_such_module_for_socketspec:app"], id="missing-module"),
        pytest.param(["export-schema", "examples.chat:no_such_attribute"], id="missing-attr"),
        pytest.param(["export-schema", "examples.chat"], id="not-module-colon-attr"),
        pytest.param(["export-schema", "examples.chat:JoinRoom"], id="not-a-socketapp"),
        pytest.param(["export-schema", CHAT, "--format", "yaml"], id="bad-format"),
        pytest.param(["export-schema", CHAT, "--format", "ts"], id="bad-format-ts"),
        pytest.param(["export-schema", CHAT, "--no-such-flag"], id="unknown-flag"),
        pytest.param(["export-schema", CHAT, "--out"], id="out-without-file"),
        pytest.param(["no-such-command"], id="unknown-command"),
        pytest.param([], id="no-command"),
    ],
)
def test_a_bad_command_line_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert_one_line_error(*run(capsys, *argv))


def test_an_app_that_fails_to_build_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = write_module(
        tmp_path,
        """
        from socketspec import SocketApp

        socket = SocketApp()

        @socket.on("twice")
        async def first(conn) -> None: ...

        @socket.on("twice")
        async def second(conn) -> None: ...

        def broken_factory():
            raise RuntimeError("no database\\nat all")
        """,
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "export-schema", f"{name}:socket")
    assert_one_line_error(code, out, err)
    assert "twice" in err
    code, out, err = run(capsys, "export-schema", f"{name}:broken_factory")
    assert_one_line_error(code, out, err)
    assert "no database at all" in err


def test_an_unwritable_output_file_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "no" / "such" / "dir.json"
    assert_one_line_error(*run(capsys, "export-schema", CHAT, "--out", str(target)))


# -- the console entry -------------------------------------------------------------------------


def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CHAT_JWT_SECRET"}
    return subprocess.run(
        [sys.executable, "-m", "socketspec.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_console_entry_point() -> None:
    done = run_module("export-schema", CHAT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["asyncapi"] == "3.0.0"

    bad = run_module("export-schema", "no_such_module_for_socketspec:app")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("socketspec export-schema: error:")
