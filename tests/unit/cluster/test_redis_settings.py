"""The Redis settings of a node: a node id drawn once, fresh per start, kept when given;
the command makes none without a Redis URL (nor in echo mode)."""

from __future__ import annotations

from socketspec.cluster import cli
from socketspec.cluster.addresses import NODE_ID_LENGTH
from socketspec.cluster.redis.settings import RedisSettings


def test_a_node_id_is_drawn_once_and_kept() -> None:
    settings = RedisSettings("redis://127.0.0.1:6379/0")
    named = settings.with_node_id()
    assert len(named.node_id) == NODE_ID_LENGTH
    int(named.node_id, 16)
    assert named.with_node_id() is named
    assert settings.with_node_id().node_id != named.node_id  # fresh per start


def test_the_flags_make_redis_settings_only_with_a_url() -> None:
    parse = cli.build_parser().parse_args
    assert cli.redis_from(parse(["app:x"])) is None
    given = cli.redis_from(parse(["app:x", "--redis", "redis://r:1/0", "--redis-node-ttl", "3"]))
    assert given == RedisSettings("redis://r:1/0", 3.0)
    assert cli.redis_from(parse(["--echo", "--redis", "redis://r:1/0"])) is None
