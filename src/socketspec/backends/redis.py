"""``RedisBackend``: the application's request to share rooms with other nodes.

Owns the settings only (the Redis URL and how long a silent node keeps its
members). The work is done where the nodes are: ``socketspec-cluster`` gives
every shard's room store a bridge to Redis (``socketspec.cluster.redis``).
In one process without the cluster (the TestClient) rooms stay in memory.

The ``redis`` client library is an extra (``pip install 'socketspec[redis]'``): nothing here
imports it, so an application that names a ``RedisBackend`` still loads, and
``require_redis_client`` tells a server that is asked to use Redis without it, in one line.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from urllib.parse import urlsplit

from socketspec.errors import ConfigurationError

SCHEMES = ("redis", "rediss", "unix")
DEFAULT_NODE_TTL = 15.0
INSTALL_HINT = "pip install 'socketspec[redis]'"


def require_redis_client() -> None:
    """ConfigurationError naming the extra to install when the redis package is missing."""
    if importlib.util.find_spec("redis") is None:
        raise ConfigurationError(
            f"sharing rooms through Redis needs the redis package: {INSTALL_HINT}"
        )


def check_redis_url(url: str) -> str:
    """``url`` if it names a Redis server; ConfigurationError saying why otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigurationError(
            f"a Redis URL starts with redis://, rediss:// or unix://, got {url!r}"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(f"a Redis URL needs a host, got {url!r}")
    return url


@dataclass(frozen=True)
class RedisBackend:
    """Share rooms, broadcasts, direct emits and ``members`` with every node on ``url``.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket).
        node_ttl: seconds after which a node that stopped refreshing its liveness key
            (it died) no longer counts its members.
    """

    url: str
    node_ttl: float = DEFAULT_NODE_TTL

    def __post_init__(self) -> None:
        check_redis_url(self.url)
        if self.node_ttl <= 0:
            raise ConfigurationError(f"node_ttl must be positive, got {self.node_ttl}")
