"""``RedisBackend``: the settings an application gives for sharing rooms through Redis."""

from __future__ import annotations

import pytest

from socketspec import RedisBackend, SocketApp
from socketspec.backends.memory import MemoryRoomStore
from socketspec.errors import ConfigurationError


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///run/redis.sock"]
)
def test_redis_urls_are_accepted(url: str) -> None:
    assert RedisBackend(url).url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis://"])
def test_anything_else_is_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Redis URL"):
        RedisBackend(url)


def test_the_node_ttl_must_be_positive() -> None:
    assert RedisBackend("redis://127.0.0.1").node_ttl == 15.0
    with pytest.raises(ConfigurationError, match="node_ttl"):
        RedisBackend("redis://127.0.0.1", node_ttl=0)


def test_an_app_keeps_it_for_the_cluster_and_rooms_in_memory_meanwhile() -> None:
    backend = RedisBackend("redis://127.0.0.1:6379/0", node_ttl=5)
    app = SocketApp(backend=backend)
    assert app.redis is backend
    assert isinstance(app.rooms.store, MemoryRoomStore)
