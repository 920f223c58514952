"""``/metrics`` is served on the cluster's own port by any shard, summed over every shard;
two clusters on one host with the default flags both start; ``--metrics-token`` guards it
(Bearer header or ``?token=``; 401 without one, 403 with a wrong one); ``--metrics-port``
also serves it on a port of the supervisor's."""

from __future__ import annotations

import asyncio
from typing import Any

from obskit import ObsCluster, http_raw, listening_ports, parse_samples, value

TOKEN = "correct-horse-battery-staple"


async def scrape(port: int, path: str = "/metrics", **headers: str) -> tuple[int, bytes]:
    status, found, body = await asyncio.to_thread(http_raw, port, path, headers)
    if status == 401:
        assert found["www-authenticate"].startswith("Bearer"), found
    return status, body


async def test_two_clusters_with_default_flags_serve_their_own_metrics_on_their_ports(
    start_cluster: Any,
) -> None:
    one: ObsCluster = start_cluster("obs_app:quiet", 1)
    two: ObsCluster = start_cluster("obs_app:quiet", 2)
    for cluster, shards in ((one, 1), (two, 2)):
        assert cluster.metrics_port == cluster.port  # announced on the cluster's port
        assert listening_ports(cluster.process.proc.pid) == set()  # the supervisor: none
        # Whichever shard answers, it sums every shard and the supervisor.
        for _ in range(4):
            status, body = await scrape(cluster.port)
            assert status == 200
            samples = parse_samples(body.decode())
            assert value(samples, "socketspec_shards_configured") == shards
            assert value(samples, "socketspec_shards_up") == shards


async def test_the_metrics_token_guards_both_endpoints(start_cluster: Any) -> None:
    cluster: ObsCluster = start_cluster(
        "obs_app:quiet", 2, "--metrics-token", TOKEN, "--metrics-port", "0"
    )
    own_port = [p for p in listening_ports(cluster.process.proc.pid)]
    assert len(own_port) == 1 and own_port[0] != cluster.port
    announced = f"metrics also at http://127.0.0.1:{own_port[0]}/metrics"
    assert announced in cluster.process.stdout_text(), cluster.process.stdout_text()
    for port in (cluster.port, own_port[0]):
        assert (await scrape(port))[0] == 401
        assert (await scrape(port, Authorization="Bearer wrong"))[0] == 403
        assert (await scrape(port, "/metrics?token=wrong"))[0] == 403
        for status, body in (
            await scrape(port, Authorization=f"Bearer {TOKEN}"),
            await scrape(port, f"/metrics?token={TOKEN}"),
        ):
            assert status == 200
            assert value(parse_samples(body.decode()), "socketspec_shards_configured") == 2
    # The rest of the port needs no token.
    assert (await scrape(cluster.port, "/healthz"))[0] == 200
