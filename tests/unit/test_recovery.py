"""The recovery token, the ack cache and the parked sessions (socketspec.recovery)."""

from __future__ import annotations

import base64

import orjson
import pytest

from socketspec.errors import ConfigurationError, ErrorCode
from socketspec.recovery import (
    NODE_ENV,
    SECRET_ENV,
    AckCache,
    ParkedSessions,
    Recovery,
    Refusal,
    SessionState,
    TokenIdentity,
    TokenSigner,
    draw_cluster_environment,
    jsonable,
    resolve_secret,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def signer(clock: Clock, secret: bytes = b"k" * 32, node: str = "", **kw: int) -> TokenSigner:
    return TokenSigner(
        secret, window=120.0, max_bytes=kw.get("max_bytes", 4096), node=node, clock=clock
    )


IDENTITY = TokenIdentity("u1", "admin", ("read", "write"), True)


def test_a_signed_token_verifies_to_the_same_state() -> None:
    clock = Clock()
    s = signer(clock)
    token = s.sign("c1", "/", IDENTITY, {"lang": "fr"}, {"lobby": "abc:3", "side": None})
    assert token is not None
    state = s.verify(token, namespace="/")
    assert isinstance(state, SessionState)
    assert state.conn_id == "c1"
    assert state.identity == IDENTITY
    assert state.metadata == {"lang": "fr"}
    assert state.rooms == {"lobby": "abc:3", "side": None}
    assert state.expires_at == pytest.approx(1120.0)


def test_the_token_format_is_payload_dot_mac_without_padding() -> None:
    token = signer(Clock()).sign("c1", "/", IDENTITY, {}, {})
    assert token is not None
    payload_b64, mac = token.split(".")
    assert "=" not in token
    payload = orjson.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    assert payload["v"] == 1 and payload["c"] == "c1" and payload["o"] == ""
    assert set(payload) == {"v", "c", "n", "o", "u", "m", "r", "i", "x"}
    assert len(mac) == 43  # 32 bytes of SHA-256


def refusal_code(result: SessionState | Refusal) -> ErrorCode:
    assert isinstance(result, Refusal), result
    return result.code


def test_a_changed_payload_is_invalid() -> None:
    s = signer(Clock())
    token = s.sign("c1", "/", IDENTITY, {}, {})
    assert token is not None
    payload_b64, mac = token.split(".")
    forged = base64.urlsafe_b64encode(
        orjson.dumps({**orjson.loads(base64.urlsafe_b64decode(payload_b64 + "==")), "c": "c2"})
    )
    forged_token = forged.rstrip(b"=").decode() + "." + mac
    assert refusal_code(s.verify(forged_token, namespace="/")) is ErrorCode.RECOVERY_INVALID


@pytest.mark.parametrize("garbage", ["", "abc", "abc.", ".abc", "!!!.???", "a.b.c", "é.é"])
def test_malformed_tokens_are_invalid(garbage: str) -> None:
    assert refusal_code(signer(Clock()).verify(garbage, namespace="/")) is (
        ErrorCode.RECOVERY_INVALID
    )


def test_a_token_over_the_size_limit_is_invalid_and_a_state_over_it_gets_none() -> None:
    s = signer(Clock(), max_bytes=300)
    assert s.sign("c1", "/", IDENTITY, {"big": "x" * 400}, {}) is None
    assert refusal_code(s.verify("a" * 301, namespace="/")) is ErrorCode.RECOVERY_INVALID


def test_past_the_window_the_token_is_expired() -> None:
    clock = Clock()
    s = signer(clock)
    token = s.sign("c1", "/", IDENTITY, {}, {})
    assert token is not None
    clock.now += 119.9
    assert isinstance(s.verify(token, namespace="/"), SessionState)
    clock.now += 0.2
    assert refusal_code(s.verify(token, namespace="/")) is ErrorCode.RECOVERY_EXPIRED


def test_another_node_or_namespace_is_foreign() -> None:
    clock = Clock()
    ours = signer(clock, node="n1")
    token = ours.sign("c1", "/", IDENTITY, {}, {})
    assert token is not None
    assert refusal_code(ours.verify(token, namespace="/chat")) is ErrorCode.RECOVERY_FOREIGN
    # Same secret, other node id; and another node with its own secret.
    assert refusal_code(signer(clock, node="n2").verify(token, namespace="/")) is (
        ErrorCode.RECOVERY_FOREIGN
    )
    other = signer(clock, secret=b"z" * 32, node="n2")
    assert refusal_code(other.verify(token, namespace="/")) is ErrorCode.RECOVERY_FOREIGN
    # Another secret on the same node: not foreign, forged.
    same_node = signer(clock, secret=b"z" * 32, node="n1")
    assert refusal_code(same_node.verify(token, namespace="/")) is ErrorCode.RECOVERY_INVALID


def test_metadata_that_is_not_json_stays_behind() -> None:
    assert jsonable({"a": 1, "b": object(), "c": [1, "x"], 3: "k"}) == {"a": 1, "c": [1, "x"]}


def test_the_secret_comes_from_the_config_then_the_environment_then_chance() -> None:
    assert resolve_secret("s", {SECRET_ENV: "e"}) == b"s"
    assert resolve_secret(None, {SECRET_ENV: "e"}) == b"e"
    drawn = resolve_secret(None, {})
    assert len(drawn) == 32 and drawn != resolve_secret(None, {})


def test_the_cluster_draws_a_secret_and_a_node_once() -> None:
    env: dict[str, str] = {}
    draw_cluster_environment(env)
    first = dict(env)
    assert env[SECRET_ENV] and env[NODE_ENV]
    draw_cluster_environment(env)
    assert env == first
    kept = {SECRET_ENV: "mine"}
    draw_cluster_environment(kept, redis=True)
    assert kept == {SECRET_ENV: "mine"}  # with Redis, no node id: every node is one domain


def test_recovery_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        Recovery(window=0)
    with pytest.raises(ConfigurationError):
        Recovery(max_token_bytes=10)
    with pytest.raises(ConfigurationError):
        Recovery(secret="")


def test_the_ack_cache_keeps_the_newest_replies() -> None:
    cache = AckCache(2)
    cache.put("a1", b"1")
    cache.put("a2", b"2")
    cache.put("a3", b"3")
    assert cache.get("a1") is None
    assert cache.items() == [("a2", b"2"), ("a3", b"3")]
    assert AckCache(2, cache.items()).get("a3") == b"3"
    disabled = AckCache(0)
    disabled.put("a", b"x")
    assert len(disabled) == 0


def test_parked_sessions_last_the_window_and_are_taken_once() -> None:
    clock = Clock(0.0)
    parked = ParkedSessions(window=10.0, limit=2, clock=clock)
    parked.park("c1", [("a1", b"1")])
    parked.park("empty", [])
    assert "empty" not in parked
    assert parked.take("c1") == [("a1", b"1")]
    assert parked.take("c1") is None
    parked.park("c2", [("a", b"x")])
    clock.now = 10.0
    assert parked.take("c2") is None


def test_parked_sessions_are_bounded_oldest_first() -> None:
    parked = ParkedSessions(window=10.0, limit=2, clock=Clock(0.0))
    for conn_id in ("c1", "c2", "c3"):
        parked.park(conn_id, [("a", conn_id.encode())])
    assert len(parked) == 2
    assert parked.take("c1") is None
    assert parked.take("c3") == [("a", b"c3")]
