"""The Origin check made at the handshake."""

from __future__ import annotations

import pytest

from socketspec.security.origins import OriginPolicy


@pytest.mark.parametrize("allowed", [None, ["*"], ["https://a.example", "*"]])
def test_star_admits_everything(allowed: list[str] | None) -> None:
    policy = OriginPolicy(allowed)
    assert policy.allows_any
    assert policy.check({}) is None
    assert policy.check({"origin": "https://evil.example"}) is None
    assert policy.check({"origin": "null"}) is None


def test_exact_match() -> None:
    policy = OriginPolicy(["https://app.example", "http://localhost:3000"])
    assert not policy.allows_any
    assert policy.check({"origin": "https://app.example"}) is None
    assert policy.check({"origin": "http://localhost:3000"}) is None


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.evil",
        "http://app.example",  # other scheme
        "https://app.example:8443",  # other port
        "https://sub.app.example",
        "http://localhost:3001",
        "null",
        "",
    ],
)
def test_other_origins_refused(origin: str) -> None:
    policy = OriginPolicy(["https://app.example", "http://localhost:3000"])
    reason = policy.check({"origin": origin})
    assert reason is not None
    assert "not allowed" in reason


@pytest.mark.parametrize(
    ("allowed", "sent"),
    [
        ("https://app.example/", "https://app.example"),
        ("https://app.example", "https://app.example/"),
        ("https://app.example/", "https://app.example/"),
    ],
)
def test_trailing_slash_ignored(allowed: str, sent: str) -> None:
    assert OriginPolicy([allowed]).check({"origin": sent}) is None


def test_missing_header_refused_with_reason() -> None:
    reason = OriginPolicy(["https://app.example"]).check({"host": "app.example"})
    assert reason is not None
    assert "missing" in reason.lower() and "origin" in reason.lower()


def test_empty_allow_list_refuses_all() -> None:
    policy = OriginPolicy([])
    assert policy.check({"origin": "https://app.example"}) is not None
    assert policy.check({}) is not None
