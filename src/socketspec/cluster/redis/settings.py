"""What a node that shares rooms through Redis is told: the URL, how long a dead node's
members keep counting, and the node's own id.

Owns ``RedisSettings``, made by the ``socketspec-cluster`` command from ``--redis`` and
``--redis-node-ttl`` (or the application's ``RedisBackend``) and completed with a
fresh node id by the supervisor. Imports no Redis client: a command that is given no
Redis URL makes none.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass

from socketspec.backends.redis import DEFAULT_NODE_TTL
from socketspec.cluster.addresses import NODE_ID_LENGTH


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str
    node_ttl: float = DEFAULT_NODE_TTL  # seconds a dead node's members keep counting, at most
    node_id: str = ""  # NODE_ID_LENGTH hex characters, drawn by the supervisor

    def with_node_id(self) -> RedisSettings:
        """These settings naming a node: a fresh id unless one is set. Fresh on every
        start, so a restarted node is not mistaken for the one that died."""
        if self.node_id:
            return self
        return dataclasses.replace(self, node_id=secrets.token_hex(NODE_ID_LENGTH // 2))
