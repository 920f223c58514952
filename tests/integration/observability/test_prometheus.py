"""The dashboard and the alert rules against a real Prometheus (Debian's ``prometheus``)
scraping a 2-shard cluster through a short workload.

Every expression of grafana/dashboards/socketspec.json must return at least one series with a
number in it (the workload feeds every panel: connections, joins, broadcasts across shards,
events and errors, a flooded mailbox, heartbeats, a slow consumer closed with 4008, a shard
killed and replaced). Every rule of ops/alerts.yml is loaded by Prometheus and evaluates
without error, and every ``socketspec_*`` metric it names is exposed. A rule that is not
firing returns nothing, so whether the rules fire is left to ``promtool test rules``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterkit import Pool, receive_n
from obskit import ObsCluster, open_stalled

from socketspec.client import Client, ErrorReply, Reconnect, connect

REPO = Path(__file__).resolve().parents[3]
DASHBOARD = REPO / "grafana" / "dashboards" / "socketspec.json"
ALERTS = REPO / "ops" / "alerts.yml"
NAME = re.compile(r"\bsocketspec_[a-z0-9_]+")
DEADLINE = 45.0  # seconds for Prometheus to show what the workload did


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title and refId, expression) of every target, rows included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((f"{panel.get('title')} [{target.get('refId')}]", target["expr"]))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    assert len(found) >= 12, found
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """``prometheus`` scraping one target every second, with ops/alerts.yml loaded."""

    def __init__(self, workdir: Path, target_port: int) -> None:
        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ALERTS}\n"
            "scrape_configs:\n"
            "  - job_name: socketspec\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n"
        )
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> tuple[int, dict[str, Any]]:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422/503: the body says why
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.logs()}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            assert time.monotonic() < deadline, f"prometheus not ready:\n{self.logs()}"
            time.sleep(0.1)

    def query(self, expr: str) -> tuple[str, list[dict[str, Any]], str]:
        """(status, result series, error) of an instant query."""
        code, body = self.get("/api/v1/query", query=expr)
        result = body.get("data", {}).get("result", [])
        if body.get("data", {}).get("resultType") != "vector":
            result = []
        return body.get("status", f"HTTP {code}"), result, body.get("error", "")

    async def aquery(self, expr: str) -> tuple[str, list[dict[str, Any]], str]:
        return await asyncio.to_thread(self.query, expr)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Any]:
    started: list[Prometheus] = []

    def start(target_port: int) -> Prometheus:
        server = Prometheus(tmp_path, target_port)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill()


def numbers(series: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in series if not math.isnan(float(s["value"][1]))]


async def drive(cluster: ObsCluster, keep: list[Client], sockets: list[socket.socket]) -> None:
    """The workload. The clients it leaves open (they answer heartbeats) go to ``keep``, the
    stalled raw socket to ``sockets``; the caller closes them."""
    process = cluster.process
    url = cluster.url()

    # A shard dies and is replaced (shard restarts, shards up).
    dead = process.pids[1]
    os.kill(dead, signal.SIGKILL)
    await process.wait_ready(1, [dead], timeout=30)

    pool = Pool(url)
    placed = await pool.on_shards({0: 2, 1: 2})
    keep.extend(pool.clients)
    members = placed[0] + placed[1]
    for client in members:
        await client.call("join", {"room": "hall"})

    # A client cut off (no close frame) reconnects and recovers its session.
    recovering = await connect(url, reconnect=Reconnect(initial=0.05, maximum=0.5))
    keep.append(recovering)
    await recovering.call("join", {"room": "hall"})
    await recovering.drop(pause=0.1)
    await recovering.wait_open(timeout=10)
    assert recovering.recovered

    # A client that never answers __ping__ is closed with 4005 (heartbeat timeout).
    silent = await connect(url, auto_pong=False)
    keep.append(silent)
    # A client that stops reading while the server floods it is closed with 4008.
    sockets.append(
        await asyncio.to_thread(
            open_stalled, process.port, process.path, "flood", {"count": 400, "size": 32768}
        )
    )
    # Broadcasts from both shards to a room with members on both (inter-shard messages,
    # fan-out), and errors (a handler that raises, an unknown event, an invalid payload),
    # in two bursts a scrape apart so that rates see them rise.
    for burst in range(2):
        for n in range(5):
            for speaker in (placed[0][0], placed[1][0]):
                await speaker.call("say", {"room": "hall", "n": burst * 5 + n})
        with pytest.raises(ErrorReply) as raised:
            await placed[burst][1].call("boom")
        assert raised.value.code == "HANDLER_ERROR"
        with pytest.raises(ErrorReply) as raised:
            await placed[burst][1].call("no_such_event")
        assert raised.value.code == "UNKNOWN_EVENT"
        with pytest.raises(ErrorReply) as raised:
            await placed[burst][1].call("join", {"nope": 1})
        assert raised.value.code == "VALIDATION_ERROR"
        await asyncio.sleep(1.5)
    for client in members:
        said = await receive_n(client, "said", 20, timeout=15)
        assert sorted(p["n"] for p in said) == sorted(list(range(10)) * 2)

    # More events than a connection runs at once and its mailbox holds: reading pauses.
    busy = await connect(url)
    keep.append(busy)
    for _ in range(160):
        await busy.emit("slow", {"seconds": 0.5})

    assert await silent.wait_closed(timeout=15) == 4005


async def test_every_dashboard_expression_and_alert_rule_works_against_prometheus(
    start_cluster: Any, prometheus: Any
) -> None:
    cluster: ObsCluster = start_cluster("obs_app:app", 2)
    server: Prometheus = await asyncio.to_thread(prometheus, cluster.metrics_port)

    # Prometheus has the target up before the workload, so that rates see every change.
    deadline = time.monotonic() + 20
    while True:
        status, series, _ = await server.aquery('up{job="socketspec"} == 1')
        if status == "success" and series:
            break
        assert time.monotonic() < deadline, f"target never up:\n{server.logs()}"
        await asyncio.sleep(0.2)

    keep: list[Client] = []
    sockets: list[socket.socket] = []
    try:
        await drive(cluster, keep, sockets)
        targets = dashboard_targets()
        extra = {
            # what the workload did must show, not only a series at 0 or NaN
            "shard restarts": ("sum(increase(socketspec_shard_restarts_total[1m])) > 0"),
            "slow consumer": ("sum(rate(socketspec_slow_consumer_closes_total[1m])) > 0"),
            "4008 closes": ('sum(socketspec_connection_closes_total{code="4008"}) > 0'),
            "4005 closes": ('sum(socketspec_connection_closes_total{code="4005"}) > 0'),
            "mailbox full": ("sum(rate(socketspec_mailbox_full_total[1m])) > 0"),
            "handler errors": ('sum(socketspec_errors_total{code="HANDLER_ERROR"}) >= 2'),
            "unknown events": ('sum(socketspec_errors_total{code="UNKNOWN_EVENT"}) >= 2'),
            "invalid payloads": ('sum(socketspec_errors_total{code="VALIDATION_ERROR"}) >= 2'),
            "pipe messages": ("sum(rate(socketspec_pipe_messages_sent_total[1m])) > 0"),
            "home broadcasts": ('sum(socketspec_broadcasts_total{path="home"}) >= 20'),
            "heartbeats": ("sum(rate(socketspec_heartbeat_rtt_seconds_count[1m])) > 0"),
            "open connections": ('sum(socketspec_connections{state="open"}) >= 5'),
            "all shards up": ("sum(socketspec_shards_up) == 2"),
            "shards configured": ("sum(socketspec_shards_configured) == 2"),
            "recoveries": ('sum(socketspec_recoveries_total{outcome="recovered"}) >= 1'),
        }
        failures: list[str] = []
        deadline = time.monotonic() + DEADLINE
        while True:
            failures = []
            for name, expr in targets:
                status, series, error = await server.aquery(expr)
                if status != "success":
                    failures.append(f"dashboard {name}: {expr!r} -> {status} {error}")
                elif not series:
                    failures.append(f"dashboard {name}: {expr!r} returned no series")
                elif not numbers(series):
                    failures.append(f"dashboard {name}: {expr!r} only NaN: {series}")
            for name, expr in extra.items():
                status, series, error = await server.aquery(expr)
                if status != "success" or not series:
                    failures.append(f"workload {name}: {expr!r} -> {status} {error} {series}")
            if not failures or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        assert not failures, "\n".join(failures)

        # The alert rules: loaded by Prometheus, each evaluated without error, each query
        # valid, each socketspec_* metric it names exposed.
        declared = set(re.findall(r"^\s*- alert:\s*(\S+)", ALERTS.read_text(), re.M))
        assert len(declared) == 9, declared
        deadline = time.monotonic() + 15
        while True:
            code, body = await asyncio.to_thread(server.get, "/api/v1/rules")
            assert code == 200 and body["status"] == "success", body
            rules = [
                rule
                for group in body["data"]["groups"]
                for rule in group["rules"]
                if rule["type"] == "alerting"
            ]
            if all(rule["health"] != "unknown" for rule in rules):
                break
            assert time.monotonic() < deadline, rules
            await asyncio.sleep(0.5)
        assert {rule["name"] for rule in rules} == declared
        names: set[str] = set()
        for rule in rules:
            assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
            status, _, error = await server.aquery(rule["query"])
            assert status == "success", (rule["name"], rule["query"], error)
            names.update(NAME.findall(rule["query"]))
        assert len(names) >= 8, names
        for metric in sorted(names):
            status, series, error = await server.aquery(
                f'{{__name__=~"{metric}|{metric}_bucket", job="socketspec"}}'
            )
            assert status == "success" and series, f"{metric} is not exposed: {error}"
    finally:
        for sock in sockets:
            sock.close()
        await asyncio.gather(*(c.close() for c in keep), return_exceptions=True)
