"""The supervisor's /metrics endpoint survives a failing scrape; --metrics-token guards it
(401 without a token, 403 with a wrong one)."""

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


@pytest.mark.parametrize(
    ("headers", "query", "allowed"),
    [
        ({"authorization": "Bearer s3cret"}, {}, True),
        ({"authorization": "bearer s3cret"}, {}, True),
        ({}, {"token": "s3cret"}, True),
        ({"authorization": "Bearer wrong"}, {"token": "s3cret"}, True),
        ({}, {}, False),
        ({"authorization": "Bearer wrong"}, {}, False),
        ({"authorization": "Basic s3cret"}, {}, False),
        ({"authorization": "s3cret"}, {}, False),
        ({}, {"token": "s3cre"}, False),
        ({}, {"token": ""}, False),
    ],
)
def test_the_token_is_a_bearer_header_or_a_query_parameter(
    headers: dict[str, str], query: dict[str, str], allowed: bool
) -> None:
    assert metrics_http.authorized("s3cret", headers, query) is allowed
    assert metrics_http.authorized(None, headers, query) is True  # no token: open


def test_the_endpoint_wants_the_token_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "render", lambda: b"socketspec_up 1\n")
    endpoint = MetricsEndpoint("127.0.0.1", 0, token="s3cret")
    try:
        refused = scrape(endpoint)
        assert refused.startswith(b"HTTP/1.1 401")
        assert b"www-authenticate: Bearer" in refused
        assert b"socketspec_up" not in refused
        assert scrape(endpoint, "/metrics?token=s3cret").endswith(b"socketspec_up 1\n")
        wrong = scrape(endpoint, "/metrics?token=s3cre")
        assert wrong.startswith(b"HTTP/1.1 403") and b"socketspec_up" not in wrong
    finally:
        endpoint.close()
