"""The admission caps of a shard: slots in all and per address, refusals, release."""

from __future__ import annotations

import pytest

from socketspec.server.caps import REASONS, RETRY_AFTER_SECONDS, ConnectionCaps, client_address


def test_no_caps_admit_everyone() -> None:
    caps = ConnectionCaps()
    for _ in range(1000):
        assert caps.admit("10.0.0.1") is None
    assert caps.total == 1000 and caps.held_by("10.0.0.1") == 1000


def test_past_max_connections_the_answer_is_503() -> None:
    caps = ConnectionCaps(max_connections=2)
    assert caps.admit("10.0.0.1") is None
    assert caps.admit("10.0.0.2") is None
    refusal = caps.admit("10.0.0.3")
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (503, "max_connections")
    assert caps.total == 2 and caps.held_by("10.0.0.3") == 0  # a refusal takes nothing


def test_past_max_per_ip_the_answer_is_429_and_other_addresses_pass() -> None:
    caps = ConnectionCaps(max_per_ip=2)
    assert caps.admit("10.0.0.1") is None
    assert caps.admit("10.0.0.1") is None
    refusal = caps.admit("10.0.0.1")
    assert refusal is not None
    assert (refusal.status, refusal.reason) == (429, "max_per_ip")
    assert "10.0.0.1" in refusal.message
    assert caps.admit("10.0.0.2") is None
    assert caps.total == 3


def test_the_shard_cap_is_checked_before_the_address_cap() -> None:
    caps = ConnectionCaps(max_connections=1, max_per_ip=1)
    assert caps.admit("10.0.0.1") is None
    refusal = caps.admit("10.0.0.1")
    assert refusal is not None and refusal.status == 503


def test_a_release_frees_the_slot_and_forgets_an_idle_address() -> None:
    caps = ConnectionCaps(max_connections=1, max_per_ip=1)
    assert caps.admit("10.0.0.1") is None
    caps.release("10.0.0.1")
    assert caps.total == 0 and caps.held_by("10.0.0.1") == 0
    assert caps._by_address == {}  # memory is bounded by the connections held
    assert caps.admit("10.0.0.2") is None


def test_releasing_a_slot_never_taken_is_an_error_naming_the_address() -> None:
    caps = ConnectionCaps()
    with pytest.raises(RuntimeError, match=r"10\.0\.0\.9"):
        caps.release("10.0.0.9")
    assert caps.total == 0


def test_every_refusal_reason_is_declared() -> None:
    refusals = [ConnectionCaps(max_connections=1), ConnectionCaps(max_per_ip=1)]
    reasons = set()
    for caps in refusals:
        caps.admit("10.0.0.1")
        refusal = caps.admit("10.0.0.1")
        assert refusal is not None
        reasons.add(refusal.reason)
    assert reasons == set(REASONS)


def test_negative_caps_are_refused() -> None:
    with pytest.raises(ValueError):
        ConnectionCaps(max_connections=-1)
    with pytest.raises(ValueError):
        ConnectionCaps(max_per_ip=-1)


def test_the_refusal_response_carries_retry_after_and_closes() -> None:
    caps = ConnectionCaps(max_per_ip=1)
    caps.admit("10.0.0.1")
    refusal = caps.admit("10.0.0.1")
    assert refusal is not None
    head, _, body = refusal.response().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    assert b"retry-after: %d" % RETRY_AFTER_SECONDS in lines
    assert b"connection: close" in lines
    assert body == refusal.message.encode() + b"\n"


@pytest.mark.parametrize(
    ("peername", "address"),
    [
        (("127.0.0.1", 50000), "127.0.0.1"),
        (("::1", 50000, 0, 0), "::1"),
        ("/run/socket", ""),
        (None, ""),
    ],
)
def test_the_client_address_of_a_peername(peername: object, address: str) -> None:
    assert client_address(peername) == address
