"""The link message router: one table from message type to handler, sans-I/O.

Owns the dispatch of a message read from a shard link to the handler for its type,
and what happens to a type no handler is registered for (logged and dropped: a newer
peer's message an older shard does not know must not break the link). It does not own
the handlers (the room store registers its own) nor the links that read the messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from socketspec.cluster.codec import LinkMessage

logger = logging.getLogger("socketspec.cluster")

# A handler gets the sending peer, that instance's generation and the message.
Handler = Callable[[int, int, Any], None]


class LinkRouter:
    """Dispatches each message to the handler registered for its exact type."""

    def __init__(self, owner: str, handlers: Mapping[type[LinkMessage], Handler]) -> None:
        self._owner = owner  # names the receiver in the log line of an unrouted message
        self._handlers: dict[type[LinkMessage], Handler] = dict(handlers)

    @property
    def routed(self) -> frozenset[type[LinkMessage]]:
        """The message types that have a handler."""
        return frozenset(self._handlers)

    def dispatch(self, peer: int, generation: int, message: LinkMessage) -> bool:
        """Run the handler for ``message``'s type; False (and a warning) if there is none."""
        handler = self._handlers.get(type(message))
        if handler is None:
            logger.warning("%s: unexpected %s from shard %s", self._owner, message.KIND, peer)
            return False
        handler(peer, generation, message)
        return True
