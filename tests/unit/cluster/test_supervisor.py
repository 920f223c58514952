"""The supervisor's decisions, on an injected clock with fake processes (no fork, no
signals sent): restarts and their backoff, the first-boot rule, boot and stop deadlines,
and a rolling reload that keeps the old shards when a replacement does not boot. Real
processes are in tests/integration/cluster."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from socketspec.cluster.lifecycle import ShardState
from socketspec.cluster.supervisor import (
    BOOT_TIMEOUT,
    MAX_BACKOFF,
    STABLE_AFTER,
    ClusterBootError,
    ClusterPhase,
    ShardProcess,
    Supervisor,
)
from socketspec.server.config import ServerConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSupervisor(Supervisor):
    """Spawning records a process that never runs; ``boots`` says how the next boot ends
    when the reload loop waits for it ("ready" or "fail")."""

    def __init__(self, workers: int = 2) -> None:
        self.clock = Clock()
        self.signals: list[tuple[int, int]] = []
        super().__init__(
            None,
            ServerConfig(),
            workers,
            clock=self.clock,
            send_signal=lambda pid, signum: self.signals.append((pid, signum)),
        )
        self._next_pid = 100
        self.boots: list[str] = []

    def _spawn(self, index: int) -> ShardProcess:
        self._generation += 1
        self._next_pid += 1
        now = self.clock()
        process = ShardProcess(index, self._next_pid, self._generation, -1, now, changed_at=now)
        self.processes[process.pid] = process
        return process

    def _step(self, timeout: float) -> None:
        self.clock.now += timeout
        booting = [p for p in self.processes.values() if p.state is ShardState.BOOTING]
        for process in booting:
            outcome = self.boots.pop(0) if self.boots else "ready"
            if outcome == "ready":
                self.serve(process)
            else:
                process.failure = "ImportError: broken"
                self._exited(process, 1)

    def serve(self, process: ShardProcess) -> None:
        from socketspec.cluster.lifecycle import ShardEvent

        process.ready_at = self.clock()
        self._move(process, ShardEvent.READY)

    def booted(self) -> list[ShardProcess]:
        processes = [self._spawn(index) for index in range(self.workers)]
        for process in processes:
            self.serve(process)
        self.phase = ClusterPhase.RUNNING
        return processes


@pytest.fixture
def supervisor() -> Iterator[FakeSupervisor]:
    supervisor = FakeSupervisor()
    yield supervisor
    supervisor.run_dir.rmdir()
    os.close(supervisor._wake_r)
    os.close(supervisor._wake_w)


def test_a_shard_that_fails_its_first_boot_stops_the_cluster(supervisor: FakeSupervisor) -> None:
    process = supervisor._spawn(0)
    process.failure = "ImportError: broken"
    with pytest.raises(ClusterBootError, match="shard 0 failed to boot: ImportError: broken"):
        supervisor._exited(process, 1)


def test_after_the_first_boot_a_failed_boot_is_restarted(supervisor: FakeSupervisor) -> None:
    supervisor.booted()
    crashed = supervisor._serving(0)
    assert crashed is not None
    supervisor._exited(crashed, 1)
    retry = supervisor._spawn(0)  # as _restart_due would
    supervisor._restart_at.clear()
    supervisor._exited(retry, 1)  # its replacement did not boot either
    assert 0 in supervisor._restart_at  # repaired, not stopped


def test_quick_deaths_back_off_exponentially_up_to_the_cap(supervisor: FakeSupervisor) -> None:
    supervisor.booted()
    delays = []
    for _ in range(10):
        serving = next(p for p in supervisor.processes.values() if p.index == 0)
        supervisor.clock.now += 1  # dies soon after it was ready: not stable
        supervisor._exited(serving, 1)
        delays.append(supervisor._restart_at[0] - supervisor.clock())
        supervisor.clock.now = supervisor._restart_at[0]
        supervisor._restart_due()
        supervisor.serve(next(p for p in supervisor.processes.values() if p.index == 0))
    assert delays[:5] == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.8])
    assert max(delays) == MAX_BACKOFF
    assert delays[-1] == MAX_BACKOFF


def test_a_shard_that_lived_long_restarts_at_once(supervisor: FakeSupervisor) -> None:
    supervisor.booted()
    supervisor._deaths[0] = 6  # it had been crashing before
    serving = supervisor._serving(0)
    assert serving is not None
    supervisor.clock.now += STABLE_AFTER
    supervisor._exited(serving, 1)
    assert supervisor._restart_at[0] == supervisor.clock()


def test_a_restart_starts_only_when_due(supervisor: FakeSupervisor) -> None:
    supervisor.booted()
    supervisor._restart_at[1] = supervisor.clock() + 0.4
    before = len(supervisor.processes)
    supervisor._restart_due()
    assert len(supervisor.processes) == before
    supervisor.clock.now += 0.4
    supervisor._restart_due()
    assert len(supervisor.processes) == before + 1
    assert 1 not in supervisor._restart_at


def test_nothing_restarts_while_the_cluster_stops(supervisor: FakeSupervisor) -> None:
    supervisor.booted()
    supervisor.phase = ClusterPhase.STOPPING
    serving = supervisor._serving(0)
    assert serving is not None
    supervisor._exited(serving, 0)
    assert supervisor._restart_at == {}


def test_a_retired_shard_is_not_restarted_and_is_killed_past_its_drain(
    supervisor: FakeSupervisor,
) -> None:
    supervisor.booted()
    serving = supervisor._serving(0)
    assert serving is not None
    supervisor._retire(serving)
    assert supervisor.signals == [(serving.pid, signal.SIGTERM)]
    assert serving.state is ShardState.RETIRING
    supervisor.clock.now += supervisor._drain_limit() - 0.1
    supervisor._check_timers()
    assert serving.state is ShardState.RETIRING
    supervisor.clock.now += 0.2
    supervisor._check_timers()
    assert serving.state is ShardState.KILLED
    assert supervisor.signals[-1] == (serving.pid, signal.SIGKILL)


def test_a_boot_past_the_timeout_stops_the_first_boot_and_is_killed_later(
    supervisor: FakeSupervisor,
) -> None:
    supervisor._spawn(0)
    supervisor.clock.now += BOOT_TIMEOUT + 1
    with pytest.raises(ClusterBootError, match="did not become ready"):
        supervisor._check_timers()
    supervisor.phase = ClusterPhase.RUNNING
    supervisor._check_timers()
    (slow,) = supervisor.processes.values()
    assert slow.state is ShardState.KILLED
    assert supervisor.signals == [(slow.pid, signal.SIGKILL)]


def test_a_reload_replaces_each_shard_before_retiring_its_predecessor(
    supervisor: FakeSupervisor,
) -> None:
    old = supervisor.booted()
    supervisor._reload("test")
    assert [p.state for p in old] == [ShardState.RETIRING, ShardState.RETIRING]
    serving = [supervisor._serving(index) for index in range(2)]
    assert all(p is not None and p not in old for p in serving)


def test_a_reload_whose_replacement_fails_keeps_the_old_shards(
    supervisor: FakeSupervisor,
) -> None:
    old = supervisor.booted()
    supervisor.boots = ["ready", "fail"]
    supervisor._reload("test")
    assert old[0].state is ShardState.RETIRING  # shard 0 runs the new code
    assert old[1].state is ShardState.SERVING  # shard 1 keeps the old one
    assert supervisor._serving(1) is old[1]
    assert 1 not in supervisor._restart_at  # its predecessor serves: nothing to repair
