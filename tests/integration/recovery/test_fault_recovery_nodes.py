"""Connection-state recovery under faults across two nodes sharing a real ``redis-server``:
the scenario of tests/support/recoverykit.py (100 clients in 5 rooms with history, one
publisher per room) over two ``socketspec-cluster`` nodes of 2 shards. Half the clients
reach one node through a balancer, the others the second node; a third of them are cut at
random meanwhile, and the first node is killed with ``kill -9`` of its whole process tree.
Its clients come back through the balancer on the second node and recover there (the nodes
share the recovery secret through Redis, and the rooms' positions and history are Redis's).
At the end every client has every message of its room exactly once, in position order,
every acked send arrived, and a send ran twice only where it was resent after the node that
ran it first was killed."""

from __future__ import annotations

import asyncio

from clusterkit import Balancer, Node, RedisServer, start_nodes
from recoverykit import APP, APPS, Config, Fault, current_pids, run_scenario, summary, verdict


def kill_node(node: Node) -> Fault:
    """``kill -9`` of the node's supervisor and every shard of its session."""

    async def fault() -> set[int]:
        pids = set(current_pids(node.process).values())
        await asyncio.to_thread(node.kill)
        return pids

    return fault


async def test_every_client_gets_every_message_once_when_a_node_is_killed(
    tmp_path: object,
) -> None:
    redis_server = RedisServer(tmp_path)  # type: ignore[arg-type]
    redis_server.start()
    nodes: list[Node] = []
    balancer: Balancer | None = None
    try:
        nodes = start_nodes(
            2,
            APP,
            2,
            "--redis",
            redis_server.url,
            "--redis-node-ttl",
            "2",
            env={"PYTHONPATH": str(APPS)},
        )
        doomed, survivor = nodes
        balancer = Balancer([doomed.process.port, survivor.process.port])
        await balancer.start()
        through_balancer = f"ws://127.0.0.1:{balancer.port}{doomed.process.path}"
        outcome = await run_scenario(
            [node.process for node in nodes],
            [(5.0, kill_node(doomed))],
            Config(members=100, load=12.0, drop_window=(1.0, 10.0), max_pause=3.0),
            urls=[through_balancer, survivor.url()],
        )
        problems = verdict(outcome)
        assert not problems, summary(outcome) + "\n" + "\n".join(problems[:40])
        assert len(outcome.killed_pids) == 2 and outcome.drops >= 25, summary(outcome)
        # Every member that came back (all of the killed node's, and the cut ones) recovered.
        came_back = [m for m in outcome.members if m.client.reconnects]
        assert len(came_back) >= len(outcome.members) // 2, summary(outcome)
        not_recovered = [m.name for m in came_back if not m.client.recovered]
        assert not not_recovered, f"not recovered: {not_recovered}; {summary(outcome)}"
    finally:
        for node in nodes:
            node.kill()
        if balancer is not None:
            await balancer.close()
        redis_server.kill()
