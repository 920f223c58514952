"""Per-connection token-bucket rate limiting.

Owns the ``RateLimit`` configuration and the ``TokenBucket`` a connection
runtime keeps. A bucket belongs to exactly one connection, so it needs no lock.
Does not own what happens to a refused event (the pipeline sends
``RATE_LIMIT_ERROR``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """``events`` per ``per_seconds``, refilled continuously; ``burst`` defaults to ``events``."""

    events: int = 100
    per_seconds: float = 60
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.events <= 0 or self.per_seconds <= 0:
            raise ValueError("RateLimit needs positive events and per_seconds")
        if self.burst is not None and self.burst <= 0:
            raise ValueError("RateLimit.burst must be positive")


class TokenBucket:
    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, config: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self._capacity = float(config.burst if config.burst is not None else config.events)
        self._rate = config.events / config.per_seconds
        self._tokens = self._capacity
        self._clock = clock
        self._stamp = clock()

    def consume(self, tokens: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < tokens:
            return False
        self._tokens -= tokens
        return True

    def retry_after(self) -> float:
        """Seconds until one token is available."""
        missing = max(0.0, 1.0 - self._tokens)
        return missing / self._rate
