"""The supervisor's ``/metrics`` endpoint: the sum over every shard, in Prometheus text format.

Owns the metrics listening socket and answering scrapes from inside the
supervisor's loop (which selects on it), by reading the shards' multiprocess
files. Also owns retiring a dead shard's files, so that its gauges stop
counting while its counters keep what it did. Does not own recording.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

logger = logging.getLogger("socketspec.supervisor")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
OWNED_ENV = "SOCKETSPEC_OWNS_METRICS_DIR"
READ_TIMEOUT = 0.5
MAX_REQUEST = 8192


def metrics_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reset_metrics_dir() -> None:
    """Values left by an earlier run would be summed with ours: start from nothing (but keep
    this process's own files, which its metrics already write to)."""
    directory = metrics_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for stale in directory.glob("*.db"):
        if not stale.name.endswith(own):
            stale.unlink(missing_ok=True)


def remove_owned_metrics_dir() -> None:
    directory = metrics_dir()
    if directory is not None and os.environ.get(OWNED_ENV) == "1":
        shutil.rmtree(directory, ignore_errors=True)


def retire(pid: int) -> None:
    """A shard died: its live gauges stop counting."""
    if metrics_dir() is not None:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


def render() -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


class MetricsEndpoint:
    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.host = host
        self.port: int = self.sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def serve_pending(self) -> None:
        """Answer every scrape waiting to be accepted."""
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            with conn, contextlib.suppress(OSError):
                try:
                    self._answer(conn)
                except Exception:
                    # A scrape must never take the supervisor down: prometheus_client can fail
                    # to read a shard's file while the shard is still creating it (a race
                    # upstream knows of); the next scrape reads it whole.
                    logger.exception("metrics scrape failed")
                    conn.sendall(
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n"
                        b"connection: close\r\n\r\n"
                    )

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        line = request.split(b"\r\n", 1)[0].split()
        method, target = (line[0], line[1]) if len(line) >= 2 else (b"", b"")
        path = target.split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            status, body, kind = b"405 Method Not Allowed", b"GET only\n", b"text/plain"
        elif path == b"/metrics":
            body = render()
            status, kind = b"200 OK", CONTENT_TYPE_LATEST.encode()
        else:
            status, body, kind = b"404 Not Found", b"metrics are at /metrics\n", b"text/plain"
        head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        conn.sendall(head % (status, kind, len(body)) + (b"" if method == b"HEAD" else body))
