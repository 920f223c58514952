"""The ops kit: Prometheus config, alert rules and their unit tests, the Grafana dashboard.

promtool (Debian's ``prometheus`` package; ``make system-deps`` installs it) checks the
scrape configs and the rules and runs ``ops/alerts_test.yml``. The dashboard must have a
panel for each of the twelve items of the issue, every expression must parse as PromQL,
and every ``socketspec_*`` name in the dashboard and the rules must be a metric listed in
``docs/metrics.md``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
GRAFANA = ROOT / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "socketspec.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

ALERTS = (
    "SocketspecShardDown",
    "SocketspecShardRestartLoop",
    "SocketspecShardHung",
    "SocketspecErrorRateSpike",
    "SocketspecSlowConsumerSpike",
    "SocketspecMailboxSaturation",
    "SocketspecHeartbeatTimeouts",
    "SocketspecConnectionsRefused",
    "SocketspecRecoveryFailures",
)

# The twelve items of the issue: a word of the panel title and the metrics it must query.
PANELS: dict[str, tuple[str, set[str]]] = {
    "connections by state": ("connections by state", {"socketspec_connections"}),
    "transition rates": ("transition", {"socketspec_connection_transitions_total"}),
    "events per second by event": ("events", {"socketspec_events_received_total"}),
    "handler latency p50/p99 by event": (
        "handler latency",
        {"socketspec_handler_duration_seconds_bucket"},
    ),
    "errors by code": ("errors", {"socketspec_errors_total"}),
    "broadcast fan-out": ("fan-out", {"socketspec_broadcast_fanout_bucket"}),
    "mailbox depth and overflow": (
        "mailbox",
        {"socketspec_mailbox_depth", "socketspec_mailbox_full_total"},
    ),
    "inter-shard messages": (
        "inter-shard",
        {"socketspec_pipe_messages_sent_total", "socketspec_pipe_messages_received_total"},
    ),
    "heartbeat round trip": ("heartbeat", {"socketspec_heartbeat_rtt_seconds_bucket"}),
    "slow-consumer closes": ("slow-consumer", {"socketspec_slow_consumer_closes_total"}),
    "shard restarts": ("restarts", {"socketspec_shard_restarts_total"}),
    "shards up": ("shards up", {"socketspec_shards_up"}),
    "hung shards and failed boots": (
        "hung shards",
        {"socketspec_shard_timeouts_total", "socketspec_shard_boot_failures_total"},
    ),
    "messages between nodes": (
        "redis): messages",
        {"socketspec_redis_published_total", "socketspec_redis_received_total"},
    ),
    "lag between nodes": ("redis): lag", {"socketspec_redis_lag_seconds_bucket"}),
    "recoveries by outcome": ("recoveries", {"socketspec_recoveries_total"}),
    "recovery replays": (
        "recovery replays",
        {
            "socketspec_recovery_replayed_messages_total",
            "socketspec_recovery_ack_replays_total",
        },
    ),
    "room history messages": ("history kept: messages", {"socketspec_room_history_messages"}),
    "room history bytes": ("history kept: bytes", {"socketspec_room_history_bytes"}),
}

NAME = re.compile(r"\bsocketspec_[a-z0-9_]+")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def promtool(*args: str, cwd: Path = ROOT) -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: run `make system-deps` (Debian package prometheus)")
    proc = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{output}"
    return output


def documented_metrics() -> dict[str, str]:
    """``socketspec_<name>`` -> type, from the table of docs/metrics.md."""
    metrics: dict[str, str] = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|"):
            continue
        kind = cells[1]
        if kind not in {"counter", "gauge", "histogram", "summary"}:
            continue
        for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
            metrics["socketspec_" + name] = kind
    return metrics


def series_names(metrics: dict[str, str]) -> set[str]:
    """Every series name the documented metrics expose (histograms: _bucket, _sum, _count)."""
    names = set(metrics)
    for name, kind in metrics.items():
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SERIES)
    return names


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows
    return [panel for panel in found if panel.get("type") != "row"]


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_metrics_doc_table_parses() -> None:
    metrics = documented_metrics()
    assert len(metrics) >= 25
    assert metrics["socketspec_handler_duration_seconds"] == "histogram"
    assert metrics["socketspec_frames_sent_total"] == "counter"
    assert metrics["socketspec_shards_up"] == "gauge"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_check_config(config: str) -> None:
    output = promtool("check", "config", f"ops/{config}")
    assert "1 rule files found" in output


def test_promtool_check_rules() -> None:
    output = promtool("check", "rules", "ops/alerts.yml")
    assert f"{len(ALERTS)} rules found" in output


def test_promtool_test_rules() -> None:
    output = promtool("test", "rules", "ops/alerts_test.yml")
    assert "SUCCESS" in output


def alert_blocks() -> dict[str, str]:
    text = (OPS / "alerts.yml").read_text()
    parts = re.split(r"^\s*- alert: *(\w+) *$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_alerts_have_severity_and_annotations() -> None:
    blocks = alert_blocks()
    assert sorted(blocks) == sorted(ALERTS)
    for name, block in blocks.items():
        assert re.search(r"^\s+severity: (critical|warning)$", block, re.MULTILINE), name
        assert re.search(r"^\s+summary: ", block, re.MULTILINE), name
        assert re.search(r"^\s+description: ", block, re.MULTILINE), name


def test_every_alert_is_tested_firing_and_silent() -> None:
    text = (OPS / "alerts_test.yml").read_text()
    checks = re.split(r"^\s*- eval_time: ", text, flags=re.MULTILINE)[1:]
    firing: set[str] = set()
    silent: set[str] = set()
    for check in checks:
        match = re.search(r"alertname: (\w+)", check)
        assert match, check
        if re.search(r"exp_alerts: \[\]", check):
            silent.add(match.group(1))
        elif "exp_labels:" in check:
            firing.add(match.group(1))
    assert firing == set(ALERTS)
    assert silent == set(ALERTS)


@pytest.mark.parametrize(
    "path", ["ops/alerts.yml", "ops/alerts_test.yml", "grafana/dashboards/socketspec.json"]
)
def test_metric_names_are_documented(path: str) -> None:
    known = series_names(documented_metrics())
    used = set(NAME.findall((ROOT / path).read_text()))
    assert used, path
    assert used <= known, f"{path} uses metrics missing from docs/metrics.md: {used - known}"


def test_dashboard_shape() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "socketspec"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("templating", {}).get("list", []) == []
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]


@pytest.mark.parametrize("item", sorted(PANELS))
def test_dashboard_has_panel_for(item: str) -> None:
    word, metrics = PANELS[item]
    matching = [panel for panel in panels(load_dashboard()) if word in panel["title"].lower()]
    assert len(matching) == 1, f"{item}: panels titled with {word!r}: {matching}"
    used = {name for target in matching[0]["targets"] for name in NAME.findall(target["expr"])}
    assert metrics <= used, f"{item}: panel {matching[0]['title']!r} queries {used}"


def test_dashboard_has_a_recovery_row_above_its_panels() -> None:
    top = load_dashboard()["panels"]
    rows = [panel for panel in top if panel.get("type") == "row"]
    assert [row["title"] for row in rows] == ["Recovery"]
    row_y = rows[0]["gridPos"]["y"]
    below = [p["title"] for p in top if p["gridPos"]["y"] > row_y]
    assert len(below) == 4 and all(
        any(word in title.lower() for word in ("recover", "history")) for title in below
    ), below


def test_dashboard_quantiles_by_event() -> None:
    exprs = [expr for _, expr in expressions(load_dashboard())]
    for phi in ("0.5", "0.99"):
        assert any(
            expr.startswith(f"histogram_quantile({phi},")
            and "socketspec_handler_duration_seconds_bucket" in expr
            and re.search(r"by \(le, event\)", expr)
            for expr in exprs
        ), phi


def test_dashboard_expressions_are_plain_promql_with_short_windows() -> None:
    for title, expr in expressions(load_dashboard()):
        assert "$" not in expr, f"{title}: Grafana variable in {expr}"
        assert set(re.findall(r"\[([^\]]+)\]", expr)) <= {"1m"}, f"{title}: {expr}"


def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    # promtool parses a rule's expression: one recording rule per panel target.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(expressions(load_dashboard()))
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules, indent=1))  # JSON is YAML
    promtool("check", "rules", str(path))


def test_provisioning_matches_dashboard_and_compose() -> None:
    datasource = (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert re.search(r"^\s+uid: prometheus$", datasource, re.MULTILINE)
    assert re.search(r"^\s+type: prometheus$", datasource, re.MULTILINE)
    provider = (GRAFANA / "provisioning" / "dashboards" / "socketspec.yml").read_text()
    match = re.search(r"^\s+path: (\S+)$", provider, re.MULTILINE)
    assert match
    compose = (OPS / "docker-compose.yml").read_text()
    assert f"../grafana/dashboards:{match.group(1)}:ro" in compose
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in compose
    assert "http://prometheus:9090" in datasource


def test_compose_mounts_exist() -> None:
    compose = (OPS / "docker-compose.yml").read_text()
    mounts = re.findall(r"^\s+- (\.\.?/[^:\s]+):", compose, re.MULTILINE)
    assert len(mounts) >= 4
    for host_path in mounts:
        assert (OPS / host_path).exists(), host_path
    assert (OPS / "Dockerfile").exists()
    assert "- ./prometheus.compose.yml:/etc/prometheus/prometheus.yml:ro" in compose
    assert "- ./alerts.yml:/etc/prometheus/alerts.yml:ro" in compose
    # /metrics on the cluster's port: the scrape target and the published port agree.
    assert '"8000:8000"' in compose and "9100" not in compose
    assert 'targets: ["socketspec:8000"]' in (OPS / "prometheus.compose.yml").read_text()
    assert 'targets: ["localhost:8000"]' in (OPS / "prometheus.yml").read_text()


def test_systemd_unit() -> None:
    unit = (OPS / "socketspec.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if re.match(r"^[A-Za-z]+=", line)
    )
    assert settings["ExecStart"].endswith("$SOCKETSPEC_APP --workers auto")
    assert "--metrics-port" not in settings["ExecStart"]  # /metrics is on the cluster's port
    assert settings["Restart"] == "on-failure"
    assert settings["KillSignal"] == "SIGTERM"
    assert "-HUP $MAINPID" in settings["ExecReload"]
    assert "EnvironmentFile" in settings
    assert int(settings["TimeoutStopSec"]) > 30 + 5  # the default graceful timeout + close
