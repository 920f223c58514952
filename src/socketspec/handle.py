"""What a transport keeps for one admitted connection: ``ConnectionHandle``.

Owns the transport-facing calls on one connection once the application has
admitted it (``SocketApp.accept``): offering a message inline (False while
every handler slot is busy), being told when a slot frees, sending with a wait
for a slot, refusing a message over the payload limit, closing, and reporting
the end. It holds the connection's runtime and the application's pipeline, so a
message reaches its handler without a lookup by connection id; the shard's
protocol, the ASGI adapter and the ``TestClient`` all drive a connection through
it. Does not own the checks and dispatch (``pipeline``), the connection's state
and handler slots (``runtime``) or its lifecycle (``app``: admission, the close,
the cleanup).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from socketspec.connection import Connection

if TYPE_CHECKING:
    from socketspec.pipeline import EventPipeline
    from socketspec.runtime import ConnectionRuntime


class ConnectionHandle:
    """One admitted connection, as its transport sees it."""

    __slots__ = ("_close", "_disconnect", "_pipeline", "_rt", "conn")

    def __init__(
        self,
        rt: ConnectionRuntime,
        pipeline: EventPipeline,
        close: Callable[[int, str], Awaitable[None]],
        disconnect: Callable[[str], Awaitable[None]],
    ) -> None:
        self.conn: Connection = rt.conn
        self._rt = rt
        self._pipeline = pipeline
        self._close = close
        self._disconnect = disconnect

    def offer(self, raw: str | bytes) -> bool:
        """Take one message without waiting: False (and nothing done) while every handler
        slot is busy; offer it again after ``when_ready``."""
        return self._pipeline.admit(self._rt, raw)

    def when_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the connection can take a message again."""
        self._rt.when_slot_free(callback)

    async def send(self, raw: str | bytes) -> None:
        """Offer one message, waiting for a slot as long as it takes (``offer`` and
        ``when_ready`` in one call); returns once it is admitted, not handled."""
        await self._pipeline.handle(self._rt, raw)

    def refuse_oversize(self) -> None:
        """The transport discarded a message over ``max_payload_size`` as it arrived."""
        rt = self._rt
        if rt.machine.accepts_events:
            self._pipeline.refuse_oversize(rt)

    async def close(self, code: int, reason: str) -> None:
        """Close from the server side with ``code``; ``reason`` reaches on_disconnect."""
        await self._close(code, reason)

    async def disconnect(self, reason: str) -> None:
        """The transport is gone (the peer closed, the network dropped): clean up once."""
        await self._disconnect(reason)

    async def wait_idle(self) -> None:
        """Until every handler started by this connection's messages has finished."""
        await self._rt.wait_idle()
