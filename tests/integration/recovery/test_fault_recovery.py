"""Connection-state recovery under faults, over a real 2-shard ``socketspec-cluster``.

100 clients in 5 rooms with history, one publisher per room shouting at a steady rate (an
acked handler broadcasting ``{publisher, seq}``), a third of the clients' TCP connections
cut at random and kept away for up to 5 s, a kill -9 of one shard and a SIGHUP rolling
reload meanwhile. At the end every client has every message of its room exactly once, in
position order, every acked send arrived, and a resent send ran twice only where the shard
that ran it first was killed (tests/support/recoverykit.py says how each is checked).
"""

from __future__ import annotations

from clusterkit import ClusterProcess
from recoverykit import APP, APPS, Config, kill_shard, reload, run_scenario, summary, verdict


async def test_every_client_gets_every_message_once_through_drops_a_kill_and_a_reload() -> None:
    cluster = ClusterProcess(
        [APP, "--workers", "2", "--port", "0", "--graceful-timeout", "5"],
        cwd=APPS,
        env={"PYTHONPATH": str(APPS)},
    )
    try:
        cluster.wait_announced(60)
        outcome = await run_scenario(
            [cluster],
            [(5.0, kill_shard(cluster, 1)), (11.0, reload(cluster))],
            Config(),
        )
        problems = verdict(outcome)
        assert not problems, summary(outcome) + "\n" + "\n".join(problems[:40])
        assert outcome.killed_pids and outcome.drops >= 30, summary(outcome)
    finally:
        cluster.kill()
