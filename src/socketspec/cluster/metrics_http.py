"""``/metrics``: the sum over every shard of a cluster, in Prometheus text format.

Owns the answer to a scrape, wherever it arrives: any shard answers ``GET
/metrics`` on the cluster's own port (``answer``) by summing the multiprocess
directory every shard and the supervisor write to, and with ``--metrics-port``
the supervisor also answers on a port of its own (``MetricsEndpoint``, served
from inside its loop, which selects on it). Both want ``--metrics-token`` when
it is set: ``Authorization: Bearer <token>`` or ``?token=<token>``, compared in
constant time; none is 401, a wrong one 403. Also owns retiring a dead shard's files, so
that its gauges stop counting while its counters keep what it did. Does not own
recording.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl

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


class Scrape(NamedTuple):
    status: int
    body: bytes
    content_type: bytes
    headers: list[tuple[bytes, bytes]]


UNAUTHORIZED = [(b"www-authenticate", b'Bearer realm="metrics"')]


def authorized(token: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether a scrape may read: no token configured, or the right one given as a Bearer
    header (lower-cased header names) or as ``?token=``."""
    if token is None:
        return True
    expected = token.encode()
    # Every offer is compared in full, so the time taken says nothing about the token.
    matches = [
        hmac.compare_digest(candidate.encode(), expected)
        for candidate in offered_tokens(headers, query)
    ]
    return any(matches)


def offered_tokens(headers: Mapping[str, str], query: Mapping[str, str]) -> list[str]:
    """The tokens a request offers: a Bearer header's, then ``?token=``'s."""
    scheme, _, given = headers.get("authorization", "").partition(" ")
    offered = [given.strip()] if scheme.lower() == "bearer" else []
    if "token" in query:
        offered.append(query["token"])
    return offered


def answer(token: str | None, headers: Mapping[str, str], query: Mapping[str, str]) -> Scrape:
    """The answer to ``GET /metrics``: (status, body, content type, extra headers). Without
    a token 401 (with the scheme to use), with a wrong one 403."""
    if not authorized(token, headers, query):
        if offered_tokens(headers, query):
            return Scrape(
                403, b"the metrics token is wrong\n", b"text/plain; charset=utf-8", []
            )
        return Scrape(
            401, b"a metrics token is required\n", b"text/plain; charset=utf-8", UNAUTHORIZED
        )
    try:
        body = render()
    except Exception:
        # prometheus_client can fail to read a shard's file while the shard is still creating
        # it (a race upstream knows of); the next scrape reads it whole.
        logger.exception("metrics scrape failed")
        return Scrape(
            500, b"metrics could not be read, try again\n", b"text/plain; charset=utf-8", []
        )
    return Scrape(200, body, CONTENT_TYPE_LATEST.encode(), [])


class MetricsEndpoint:
    """``--metrics-port``: the supervisor's own listener for scrapes."""

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self.token = token
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
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        head_line, _, rest = request.partition(b"\r\n")
        line = head_line.split()
        method, target = (line[0], line[1]) if len(line) >= 2 else (b"", b"")
        path, _, raw_query = target.decode("latin-1").partition("?")
        headers: dict[str, str] = {}
        for header in rest.decode("latin-1").split("\r\n"):
            name, sep, text = header.partition(":")
            if sep:
                headers[name.strip().lower()] = text.strip()
        if method not in (b"GET", b"HEAD"):
            scrape = Scrape(405, b"GET only\n", b"text/plain", [])
        elif path == "/metrics":
            scrape = answer(self.token, headers, dict(parse_qsl(raw_query)))
        else:
            scrape = Scrape(404, b"metrics are at /metrics\n", b"text/plain", [])
        lines = [
            b"HTTP/1.1 %d %s" % (scrape.status, REASONS[scrape.status]),
            b"content-type: " + scrape.content_type,
            b"content-length: %d" % len(scrape.body),
            b"connection: close",
            *(name + b": " + value for name, value in scrape.headers),
        ]
        body = b"" if method == b"HEAD" else scrape.body
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)


REASONS = {
    200: b"OK",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    500: b"Internal Server Error",
}
