"""The Autobahn run the conformance tests share: kosoku's sections 1-10 against one address,
and the cases it reported. What counts as a pass is each test's own business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

KOSOKU = Path(sys.executable).parent / "kosoku"
SECTIONS = ("1", "2", "3", "4", "5", "6", "7", "9", "10")
ACCEPTED = frozenset({"OK", "INFORMATIONAL"})
KOSOKU_TIMEOUT = 180.0  # the selection takes about 6 s on 2 cores


def run_sections(address: str, outdir: Path) -> dict[str, dict[str, Any]]:
    """Run ``SECTIONS`` against ``address`` (``host:port`` or a ws:// URL), reports in
    ``outdir``; every case kosoku reported, by case id, all sections present."""
    argv = [str(KOSOKU), "-p", "4", "-o", str(outdir)]
    for section in SECTIONS:
        argv += ["-i", f"{section}.*"]
    completed = subprocess.run(
        [*argv, address],
        capture_output=True,
        text=True,
        timeout=KOSOKU_TIMEOUT,
        check=False,
    )
    index = outdir / "index.json"
    assert index.is_file(), (
        f"kosoku exited {completed.returncode} without a report:\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    )
    cases: dict[str, dict[str, Any]] = {}
    for agent_cases in json.loads(index.read_text()).values():
        cases.update(agent_cases)
    assert {case_id.split(".")[0] for case_id in cases} == set(SECTIONS)
    return cases
