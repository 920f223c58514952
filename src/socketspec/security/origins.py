"""The Origin check made during the WebSocket handshake.

Owns the rule: ``"*"`` admits every origin (and a missing header); otherwise
the Origin header must match an allowed origin exactly, and a request without
one is refused. Does not own the HTTP response (the transport answers 403).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class OriginPolicy:
    __slots__ = ("_allowed", "_any")

    def __init__(self, allowed: Iterable[str] | None) -> None:
        origins = ["*"] if allowed is None else list(allowed)
        self._any = "*" in origins
        self._allowed = frozenset(o.rstrip("/") for o in origins if o != "*")

    @property
    def allows_any(self) -> bool:
        return self._any

    def check(self, headers: Mapping[str, str]) -> str | None:
        """None when the request may proceed; otherwise the one-line reason it may not."""
        if self._any:
            return None
        origin = headers.get("origin")
        if origin is None:
            return "missing Origin header"
        if origin.rstrip("/") not in self._allowed:
            return f"origin {origin!r} is not allowed"
        return None
