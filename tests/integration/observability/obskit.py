"""Helpers of the observability tests: a ``socketspec-cluster`` subprocess serving
``apps/obs_app.py`` (started and killed with clusterkit of the cluster tests), its
``/metrics`` read and parsed, and plain HTTP requests to a shard (``/healthz``, ``/readyz``)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterkit import ClusterProcess
from prometheus_client.parser import text_string_to_metric_families
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request, TextMessage

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"

METRICS_AT = re.compile(r"socketspec-cluster: metrics at (http://127\.0\.0\.1:(\d+)/metrics)")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class ObsCluster:
    """An announced cluster and what the tests read from it (``/metrics`` is on its own
    port unless the test asks for ``--metrics-port``)."""

    def __init__(self, process: ClusterProcess) -> None:
        self.process = process
        self.metrics_url: str | None = None

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def metrics_port(self) -> int:
        assert self.metrics_url is not None
        return int(self.metrics_url.rsplit(":", 1)[1].split("/", 1)[0])

    def url(self) -> str:
        return self.process.url()

    def wait_metrics_line(self, timeout: float = 10.0) -> str:
        """The metrics URL printed after the announce line."""
        deadline = time.monotonic() + timeout
        while True:
            found = METRICS_AT.search(self.process.stdout_text())
            if found:
                self.metrics_url = found.group(1)
                return self.metrics_url
            assert time.monotonic() < deadline, (
                f"no 'metrics at' line within {timeout:g}s: stdout="
                f"{self.process.stdout_text()!r} stderr={self.process.stderr_text()[-2000:]}"
            )
            time.sleep(0.02)

    def scrape(self) -> Samples:
        assert self.metrics_url is not None
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            assert response.status == 200
            text = response.read().decode()
        return parse_samples(text)

    async def ascrape(self) -> Samples:
        return await asyncio.to_thread(self.scrape)

    async def wait_metrics(
        self, check: Callable[[Samples], bool], timeout: float = 10.0, what: str = ""
    ) -> Samples:
        """Scrape until ``check`` holds (shards flush their tallies once a second)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = await self.ascrape()
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                shown = "\n".join(
                    f"{name}{dict(labels)} {number}"
                    for (name, labels), number in sorted(samples.items())
                    if not name.endswith("_bucket")
                )
                raise AssertionError(f"/metrics never showed {what} within {timeout:g}s:\n{shown}")
            await asyncio.sleep(0.1)


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is not exposed (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def http_raw(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from ``port``: (status, lower-cased headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        found = {name.lower(): value for name, value in response.getheaders()}
        return response.status, found, response.read()
    finally:
        conn.close()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
    """GET ``path`` from the cluster's port on a new connection: (status, JSON body). A
    connection reset by a shard that is dying is tried again (new connections land on any
    shard), a few times."""
    attempts = 20
    for attempt in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        except (ConnectionError, http.client.HTTPException):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
        finally:
            conn.close()
    raise AssertionError("unreachable")


def start(app: str, workers: int, *extra: str) -> ObsCluster:
    args = [app, "--workers", str(workers), "--port", "0", "--graceful-timeout", "5", *extra]
    process = ClusterProcess(args, cwd=APPS)
    try:
        process.wait_announced(60)
        cluster = ObsCluster(process)
        if "--no-metrics" not in extra:
            cluster.wait_metrics_line()
    except BaseException:
        process.kill()
        raise
    return cluster


def open_stalled(port: int, path: str, event: str, payload: dict[str, Any]) -> socket.socket:
    """A WebSocket over a plain blocking socket with a tiny receive buffer: reads the
    greeting, sends one ``event``, and is then never read again (a slow consumer). The
    caller closes the socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", port))
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(ws.send(Request(host=f"127.0.0.1:{port}", target=path)))
        greeted = False
        while not greeted:
            data = sock.recv(65536)
            assert data, "the server closed before its greeting"
            ws.receive_data(data)
            for item in ws.events():
                if (
                    isinstance(item, TextMessage)
                    and json.loads(item.data)["event"] == "__connect__"
                ):
                    greeted = True
        sock.sendall(ws.send(TextMessage(data=json.dumps({"event": event, "payload": payload}))))
    except BaseException:
        sock.close()
        raise
    return sock


def listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` listens on (its socket descriptors matched in /proc/net/tcp*)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
