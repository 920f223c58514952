"""``socketspec-cluster`` without APP serves every handler library installed under the
``socketspec.handlers`` entry-point group: the test package in handler_pkg/ names a SocketApp
in namespace "/plugin" and a ``register(app)`` callable."""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

import pytest
from clusterkit import Pool, StartCluster

from socketspec.client import ErrorReply


def test_the_handler_package_declares_both_entry_points(handler_package: str) -> None:
    entries = {
        e.name: e.value
        for e in distribution(handler_package).entry_points
        if e.group == "socketspec.handlers"
    }
    assert entries == {
        "plugin": "socketspec_test_handlers:plugin_app",
        "root": "socketspec_test_handlers:register",
    }


async def test_without_app_the_cluster_serves_every_installed_handler_library(
    handler_package: str, start_cluster: StartCluster, tmp_path: Path
) -> None:
    # Run from an empty directory: nothing but the installed package can be found.
    cluster = start_cluster(None, 2, cwd=tmp_path)
    async with Pool(cluster.url("/plugin")) as plugin, Pool(cluster.url()) as root:
        plugin_clients = await plugin.on_shards(range(2))
        root_clients = await root.on_shards(range(2))
        for shard in range(2):
            (client,) = plugin_clients[shard]
            assert client.greeting["namespace"] == "/plugin"
            reply = await client.call("plugin_ping", {"shard": shard})
            assert reply == {"from": "plugin", "namespace": "/plugin", "echo": {"shard": shard}}
            with pytest.raises(ErrorReply) as refused:
                await client.call("root_ping")
            assert refused.value.code == "UNKNOWN_EVENT"

            (client,) = root_clients[shard]
            assert client.greeting["namespace"] == "/"
            reply = await client.call("root_ping", {"shard": shard})
            assert reply == {"from": "register", "namespace": "/", "echo": {"shard": shard}}
            with pytest.raises(ErrorReply) as refused:
                await client.call("plugin_ping")
            assert refused.value.code == "UNKNOWN_EVENT"
