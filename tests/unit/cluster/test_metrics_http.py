"""The supervisor's /metrics endpoint survives a failing scrape."""

from __future__ import annotations

import socket

import pytest

from socketspec.cluster import metrics_http
from socketspec.cluster.metrics_http import MetricsEndpoint


def scrape(endpoint: MetricsEndpoint, path: str = "/metrics") -> bytes:
    with socket.create_connection(("127.0.0.1", endpoint.port), timeout=2) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        endpoint.serve_pending()
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_scrape_that_fails_answers_500_and_the_next_one_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    try:
        monkeypatch.setattr(
            metrics_http, "render", lambda: (_ for _ in ()).throw(ValueError("half a file"))
        )
        assert scrape(endpoint).startswith(b"HTTP/1.1 500")
        monkeypatch.setattr(metrics_http, "render", lambda: b"socketspec_up 1\n")
        answer = scrape(endpoint)
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"socketspec_up 1\n")
        assert scrape(endpoint, "/other").startswith(b"HTTP/1.1 404")
    finally:
        endpoint.close()
