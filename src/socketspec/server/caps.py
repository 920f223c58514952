"""Admission caps of one shard, sans-I/O: how many WebSocket connections it holds, in
all and per client address.

Owns the counts and the decision: ``admit(address)`` either takes a slot (the
connection is counted until ``release(address)``) or returns the ``Refusal`` to
answer instead of the upgrade: 503 when the shard holds ``max_connections``,
429 when the address holds ``max_per_ip``, both with a ``Retry-After``. A cap
of 0 is no cap.

Counted are connections from the moment they are admitted (just before the
101) until they close. A request still in its HTTP head takes no slot: it is
bounded by the handshake deadline, so a client that opens connections and
never finishes its request (slow loris) cannot use up the slots of clients
that do. Does not own sockets or metrics (the protocol records the refusal).
"""

from __future__ import annotations

from typing import NamedTuple

from socketspec.server import http

# Seconds a refused client is asked to wait. Slots free as connections close, and with
# SO_REUSEPORT a retry may land on another shard: a short wait is enough.
RETRY_AFTER_SECONDS = 1
# Why an upgrade is refused: the label values of socketspec_connections_refused_total.
REASONS = ("max_connections", "max_per_ip")


class Refusal(NamedTuple):
    status: int  # the HTTP status answered instead of the upgrade
    reason: str  # the metric label: max_connections or max_per_ip
    message: str  # the response body's one line

    def response(self) -> bytes:
        """The HTTP answer given instead of the upgrade."""
        return http.response(
            self.status,
            self.message.encode() + b"\n",
            extra=[(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)],
        )


class ConnectionCaps:
    """The slots of one shard. Memory is bounded by the connections held: an address is
    forgotten when its last connection is released."""

    __slots__ = ("_by_address", "max_connections", "max_per_ip", "total")

    def __init__(self, max_connections: int = 0, max_per_ip: int = 0) -> None:
        if max_connections < 0 or max_per_ip < 0:
            raise ValueError("caps are counts: 0 (no cap) or more")
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.total = 0
        self._by_address: dict[str, int] = {}

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def admit(self, address: str) -> Refusal | None:
        """Take a slot for a connection from ``address``, or say why not."""
        if self.max_connections and self.total >= self.max_connections:
            return Refusal(
                503,
                "max_connections",
                f"server at capacity ({self.max_connections} connections); retry later",
            )
        held = self._by_address.get(address, 0)
        if self.max_per_ip and held >= self.max_per_ip:
            return Refusal(
                429,
                "max_per_ip",
                f"too many connections from {address} ({self.max_per_ip}); retry later",
            )
        self.total += 1
        self._by_address[address] = held + 1
        return None

    def release(self, address: str) -> None:
        """A connection ``admit`` took a slot for has closed."""
        held = self._by_address.get(address, 0)
        if held <= 0:
            raise RuntimeError(f"release of {address!r}, which holds no slot")
        if held == 1:
            del self._by_address[address]
        else:
            self._by_address[address] = held - 1
        self.total -= 1


def client_address(peername: object) -> str:
    """The address part of a transport's ``peername`` (``(host, port)`` for IPv4,
    ``(host, port, flow, scope)`` for IPv6); a Unix socket or an unknown peer counts as
    one address, ``""``."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return ""
