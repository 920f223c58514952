"""The benchmark harness end to end, small: ``bench/run.py --smoke`` against socketspec.

Every workload runs once for half a second on a fresh cluster (about 10 s in all), and
the results must be complete and consistent: the JSON file and its markdown written, one
record per run without error, positive rates, every broadcast delivered once to every
member, every server stopped cleanly. Nothing here judges performance.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"
TIMEOUT = 180.0  # the smoke run takes about 10 s; a hung server must not hang the suite
CLEAN_EXITS = (0, -15)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    docs = tmp_path_factory.mktemp("docs")
    process = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out), "--docs", str(docs)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert process.returncode == 0, process.stderr[-3000:] + process.stdout[-3000:]
    files = sorted(out.glob("smoke-*.json"))
    assert len(files) == 1, list(out.iterdir())
    assert files[0].with_suffix(".md").exists()
    assert not (out / "latest.md").exists()  # a smoke run is never the latest result
    assert not list(docs.iterdir())  # nor does it touch the docs
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    return {"data": json.loads(files[0].read_text()), "lines": lines}


def records(smoke: dict[str, Any], workload: str) -> list[dict[str, Any]]:
    return [r for r in smoke["data"]["records"] if r["workload"] == workload]


def test_one_json_line_per_run_and_all_in_the_file(smoke: dict[str, Any]) -> None:
    data = smoke["data"]
    assert data["smoke"] is True
    assert smoke["lines"] == data["records"]
    assert {(r["workload"], r.get("shards", 1)) for r in data["records"]} == {
        ("echo", 1),
        ("latency", 1),
        ("broadcast", 1),
        ("fanout", 1),
        ("idle", 1),
        ("shards", 1),
        ("shards", 2),
        ("capacity", 2),
    }
    for record in data["records"]:
        assert record["server"] == "socketspec"
        assert "error" not in record, record
        assert record["errors"] == [], record
        assert record["server_closes"] == 0, record
        assert record["server_exit"] in CLEAN_EXITS, record
        if record["workload"] != "idle":
            assert record["server_cpu_s"] >= 0
            assert isinstance(record["generator_saturated"], bool)
    assert data["summary"]["echo/socketspec"]["good_runs"] == 1
    assert data["versions"]["socketspec"]["socketspec"]


def test_echo_rates(smoke: dict[str, Any]) -> None:
    for workload in ("echo", "latency"):
        (record,) = records(smoke, workload)
        assert record["failed_connections"] == 0
        assert record["messages"] > 0
        assert record["messages_per_s"] > 0
        assert record["drained"] is True
    (latency,) = records(smoke, "latency")
    assert latency["latency_samples"] > 0
    assert 0 < latency["latency_p50_ms"] <= latency["latency_p99_ms"]


@pytest.mark.parametrize("workload", ["broadcast", "fanout", "shards"])
def test_every_broadcast_reaches_every_member_once(smoke: dict[str, Any], workload: str) -> None:
    for record in records(smoke, workload):
        assert record["failed_members"] == 0, record
        assert record["members"] == 50
        assert record["acks"] >= record["members"]  # every join was acknowledged
        assert record["broadcasts_sent"] > 0
        assert record["deliveries"] > 0
        assert record["deliveries_per_s"] > 0
        assert record["drained"] is True, record
        assert record["missing_deliveries"] == 0, record
        assert record["extra_deliveries"] == 0, record
        assert record["members_lost"] == 0, record
        assert record["unparsed_stamps"] == 0
        assert record["latency_samples"] > 0
        assert 0 < record["latency_p50_ms"] <= record["latency_p99_ms"]


def test_two_shards_send_across_shards(smoke: dict[str, Any]) -> None:
    (two,) = [r for r in records(smoke, "shards") if r["shards"] == 2]
    assert two["server_processes"] == 3  # the supervisor and two shards
    assert two["sender_shard"] != two["room_home_shard"]
    assert sum(two["members_per_shard"].values()) == two["members"]


def test_capacity_levels_reach_every_member_once(smoke: dict[str, Any]) -> None:
    levels = records(smoke, "capacity")
    assert [record["level"] for record in levels] == [60, 120]
    for record in levels:
        assert record["members"] == record["level"], record
        assert record["failed_members"] == 0
        assert record["generator_processes"] == 2
        assert record["shards"] == 2
        assert (
            record["deliveries"] == record["broadcasts"] * record["members"] == 2 * record["level"]
        )
        assert record["missing_deliveries"] == 0, record
        assert record["extra_deliveries"] == 0, record
        assert record["members_lost"] == 0, record
        assert record["connections_per_s"] > 0
        assert record["rss_after_kib"] > record["rss_before_kib"] > 0
        assert 0 < record["first_delivery_ms"] <= record["last_delivery_ms"]
        assert 0 < record["latency_p50_ms"] <= record["latency_p99_ms"]
        assert record["generator_cpu_us_per_delivery"] > 0


def test_idle_memory_is_measured(smoke: dict[str, Any]) -> None:
    (record,) = records(smoke, "idle")
    assert record["connections"] == 100
    assert record["failed_connections"] == 0
    assert record["alive_after_settle"] == 100
    assert record["rss_after_kib"] > 0
    assert record["kib_per_connection"] is not None


def test_markdown_has_the_tables(smoke: dict[str, Any]) -> None:
    # Rendered again from the same data: the report needs nothing but the JSON.
    spec = importlib.util.spec_from_file_location("bench_report", REPO / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    data = smoke["data"]
    text = report.results_markdown(data, data["summary"], title=True)
    assert "| echo throughput" in text
    assert "| idle memory" in text
    assert "2 shards" in text
    assert "| one broadcast: first to last (ms) |" in text
    assert "120 members" in text
