"""Message reassembly with size limits, sans-I/O.

Owns turning wsproto's partial data events into whole messages while holding
no more than ``soft_limit`` bytes of any one message: a message past the soft
limit is discarded as it arrives and reported as ``OVERSIZE`` when it ends
(the connection answers ``PAYLOAD_TOO_LARGE`` and stays open); one past the
hard limit is reported as ``TOO_BIG`` at once (the connection closes with
1009). Sizes are UTF-8 bytes, as on the wire.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    OVERSIZE = "oversize"
    TOO_BIG = "too_big"


def utf8_size(data: str | bytes | bytearray) -> int:
    if isinstance(data, bytes | bytearray):
        return len(data)
    return len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))


class MessageAssembler:
    __slots__ = ("_hard_limit", "_parts", "_size", "_soft_limit")

    def __init__(self, soft_limit: int, hard_limit: int) -> None:
        self._soft_limit = soft_limit
        self._hard_limit = hard_limit
        self._parts: (
            list[str | bytes | bytearray] | None
        ) = []  # None while discarding an oversize message
        self._size = 0

    def feed(
        self, data: str | bytes | bytearray, finished: bool
    ) -> str | bytes | bytearray | Verdict | None:
        """One partial event; returns the whole message, a verdict, or None (more to come)."""
        parts = self._parts
        if finished and parts is not None and not parts and self._size == 0:
            # The common case, a message in one piece: no copy.
            size = utf8_size(data)
            if size > self._hard_limit:
                return Verdict.TOO_BIG
            if size > self._soft_limit:
                return Verdict.OVERSIZE
            return data
        self._size += utf8_size(data)
        if self._size > self._hard_limit:
            self._reset()
            return Verdict.TOO_BIG
        if parts is not None:
            if self._size > self._soft_limit:
                self._parts = parts = None
            else:
                parts.append(data)
        if not finished:
            return None
        self._reset()
        if parts is None:
            return Verdict.OVERSIZE
        if isinstance(data, str):
            return "".join(parts)  # type: ignore[arg-type]
        return b"".join(parts)  # type: ignore[arg-type]

    def _reset(self) -> None:
        self._parts = []
        self._size = 0
