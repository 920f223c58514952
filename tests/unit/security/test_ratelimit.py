"""RateLimit configuration and the per-connection TokenBucket, on a fake clock."""

from __future__ import annotations

import pytest

from socketspec.security.ratelimit import RateLimit, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_defaults() -> None:
    limit = RateLimit()
    assert (limit.events, limit.per_seconds, limit.burst) == (100, 60, None)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"events": 0},
        {"events": -5},
        {"per_seconds": 0},
        {"per_seconds": -1.0},
        {"burst": 0},
        {"burst": -1},
    ],
    ids=["events0", "events-neg", "per0", "per-neg", "burst0", "burst-neg"],
)
def test_non_positive_values_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RateLimit(**kwargs)  # type: ignore[arg-type]


def test_burst_defaults_to_events() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(events=5, per_seconds=10), clock)
    assert [bucket.consume() for _ in range(6)] == [True] * 5 + [False]


def test_explicit_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(events=10, per_seconds=10, burst=3), clock)
    assert [bucket.consume() for _ in range(4)] == [True, True, True, False]


def test_refill_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(events=2, per_seconds=1), clock)  # 2 tokens per second
    assert bucket.consume() and bucket.consume()
    assert not bucket.consume()
    clock.now += 0.25  # half a token
    assert not bucket.consume()
    clock.now += 0.25  # one token
    assert bucket.consume()
    assert not bucket.consume()
    clock.now += 10  # refill is capped at the burst
    assert [bucket.consume() for _ in range(3)] == [True, True, False]


def test_retry_after() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(events=4, per_seconds=2), clock)  # 2 tokens per second
    assert bucket.retry_after() == 0.0
    for _ in range(4):
        assert bucket.consume()
    assert not bucket.consume()
    assert bucket.retry_after() == pytest.approx(0.5)
    clock.now += 0.2
    assert not bucket.consume()
    assert bucket.retry_after() == pytest.approx(0.3)
    clock.now += 0.3
    assert bucket.consume()


def test_consume_several_tokens() -> None:
    clock = Clock()
    bucket = TokenBucket(RateLimit(events=5, per_seconds=5), clock)
    assert bucket.consume(3)
    assert not bucket.consume(3)  # a refusal takes nothing
    assert bucket.consume(2)
