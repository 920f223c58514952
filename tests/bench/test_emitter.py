"""The emitter benchmark end to end, small: ``bench/emitter.py --smoke`` against socketspec.

A redis-server of its own, one socketspec node, 20 members in the room, a worker process
with only Redis pushing 50 messages: every member must receive every message exactly once,
the results be written (never as the latest result), and every process stop cleanly.
Nothing here judges performance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EMITTER = REPO / "bench" / "emitter.py"


def test_a_worker_with_only_redis_reaches_every_member_once(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, str(EMITTER), "--smoke", "--out", str(tmp_path)],
        cwd=REPO / "bench",
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert process.returncode == 0, process.stderr[-3000:] + process.stdout[-3000:]
    (data_file,) = tmp_path.glob("emitter-smoke-*.json")
    assert data_file.with_suffix(".md").exists()
    assert not (tmp_path / "emitter-latest.md").exists()
    (record,) = json.loads(data_file.read_text())["records"]
    assert record["server"] == "socketspec" and "error" not in record, record
    assert (record["members"], record["failed_members"]) == (20, 0)
    assert record["drained"] is True
    assert (record["missing_deliveries"], record["extra_deliveries"]) == (0, 0)
    assert record["messages_per_s"] > 0 and record["server_exit"] in (0, -15)
