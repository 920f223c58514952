"""The cross-node benchmark end to end, small: ``bench/nodes.py --smoke`` against socketspec.

A redis-server of its own and two socketspec nodes, 50 members on node B, the sender on
node A, half a second measured (a few seconds in all): every broadcast must cross Redis
and reach every member once, the CPU of both nodes and of redis-server must be read,
nothing written to disk by Redis, and every process stopped cleanly. Nothing here judges
performance. Skipped without redis-server (``make system-deps`` installs it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODES = REPO / "bench" / "nodes.py"
TIMEOUT = 120.0
CLEAN_EXITS = (0, -15)

@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench-nodes")
    docs = tmp_path_factory.mktemp("docs")
    process = subprocess.run(
        [sys.executable, str(NODES), "--smoke", "--out", str(out), "--docs", str(docs)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert process.returncode == 0, process.stderr[-3000:] + process.stdout[-3000:]
    files = sorted(out.glob("nodes-smoke-*.json"))
    assert len(files) == 1, list(out.iterdir())
    assert files[0].with_suffix(".md").exists()
    assert not (out / "nodes-latest.md").exists()  # a smoke run is never the latest result
    assert not list(docs.iterdir())
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    return {
        "data": json.loads(files[0].read_text()),
        "lines": lines,
        "markdown": files[0].with_suffix(".md").read_text(),
    }


def test_one_run_across_two_nodes(smoke: dict[str, Any]) -> None:
    data = smoke["data"]
    assert smoke["lines"] == data["records"]
    (record,) = data["records"]
    assert record["server"] == "socketspec"
    assert "error" not in record, record
    assert record["errors"] == [], record
    assert record["node_exits"] and all(code in CLEAN_EXITS for code in record["node_exits"])
    assert record["redis_exit"] in CLEAN_EXITS
    assert record["redis_files_on_disk"] == []
    assert len(set(record["node_ids"])) == 2  # two nodes, not one


def test_every_broadcast_crosses_redis_to_every_member_once(smoke: dict[str, Any]) -> None:
    (record,) = smoke["data"]["records"]
    assert record["members"] == 50
    assert record["failed_members"] == 0
    assert record["broadcasts_sent"] > 1
    assert record["deliveries"] > 0
    assert record["drained"] is True, record
    assert record["missing_deliveries"] == 0, record
    assert record["extra_deliveries"] == 0, record
    assert record["members_lost"] == 0
    assert record["unparsed_stamps"] == 0
    assert 0 < record["latency_p50_ms"] <= record["latency_p99_ms"]
    # Each broadcast was published once, by node A.
    assert record["redis_publish_calls"] >= record["broadcasts_sent"]
    published = record["node_a_metrics"]
    assert sum(v for k, v in published.items() if "redis_published_total" in k) > 0


def test_cpu_of_both_nodes_and_redis(smoke: dict[str, Any]) -> None:
    (record,) = smoke["data"]["records"]
    for part in ("node_a", "node_b", "redis"):
        assert record[f"{part}_cpu_s"] >= 0
    assert record["node_b_cpu_s"] > 0  # it wrote every delivery
    total = record["node_a_cpu_s"] + record["node_b_cpu_s"] + record["redis_cpu_s"]
    assert record["server_cpu_s"] == pytest.approx(total, abs=0.01)
    assert smoke["data"]["summary"]["nodes/socketspec"]["good_runs"] == 1


def test_markdown_has_the_table(smoke: dict[str, Any]) -> None:
    text = smoke["markdown"]
    assert "| deliveries/s, more is better |" in text
    assert "redis-server's share of the server CPU" in text
    assert "share core 0" in text or "nothing pinned" in text
