"""RFC 6455 conformance in `make test`: Autobahn sections 1 to 10 (kosoku) against the echo
server, in a subprocess on a free port.

Sections 12 and 13 (permessage-deflate, about five minutes) run in `make conformance`,
which writes docs/conformance.md. Autobahn has no section 8.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from autobahnkit import ACCEPTED, run_sections

BIN = Path(sys.executable).parent
SERVER = BIN / "socketspec-cluster"
LISTENING = re.compile(r"listening on ws://(127\.0\.0\.1):(\d+)/")
READY_TIMEOUT = 30.0


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def echo_address(tmp_path: Path) -> Iterator[str]:
    """host:port of `socketspec-cluster --echo --compression --port 0`, stopped afterwards."""
    with (tmp_path / "server.log").open("w") as log:
        process = subprocess.Popen(
            [str(SERVER), "--echo", "--compression", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # keeps the pipe drained for the server's whole life
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        address = None
        try:
            while address is None:
                line = lines.get(timeout=READY_TIMEOUT)
                if line is None:
                    break
                match = LISTENING.search(line)
                if match:
                    address = f"{match.group(1)}:{match.group(2)}"
        except queue.Empty:
            pass
        if address is None:
            pytest.fail(
                "the echo server did not announce its port: "
                + (tmp_path / "server.log").read_text()[-2000:]
            )
        yield address
    finally:
        _stop(process)


def _describe(outdir: Path, case_id: str, case: dict[str, Any]) -> str:
    text = (
        f"{case_id}: {case.get('behavior')} (close {case.get('behaviorClose')}, "
        f"remote close code {case.get('remoteCloseCode')})"
    )
    report = outdir / case.get("reportfile", "")
    if report.is_file():
        detail = json.loads(report.read_text())
        text += f" {detail.get('description', '')!r}: {detail.get('result', '')}"
    return text


def test_autobahn_sections_1_to_10(echo_address: str, tmp_path: Path) -> None:
    outdir = tmp_path / "reports"
    cases = run_sections(echo_address, outdir)
    offending = [
        _describe(outdir, case_id, case)
        for case_id, case in sorted(cases.items(), key=lambda item: _key(item[0]))
        if case.get("behavior") not in ACCEPTED or case.get("behaviorClose") not in ACCEPTED
    ]
    assert not offending, f"{len(offending)} of {len(cases)} cases not OK:\n" + "\n".join(offending)


def _key(case_id: str) -> list[int]:
    return [int(part) for part in case_id.split(".")]
