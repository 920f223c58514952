"""A shard process's life as the supervisor sees it, sans-I/O: states, one transition table,
and the liveness bookkeeping.

Owns the ``ShardState`` enum, the events that move it (``ShardEvent``), the one table of
legal moves (an illegal one raises ``IllegalTransition`` naming the state), the metric each
move records, and ``Liveness``: when each serving shard last reported, and which ones have
been silent for longer than the timeout. Does not own processes, signals or pipes (the
supervisor does, and feeds this module what it saw with the time it saw it).

::

    BOOTING  --ready-------->  SERVING
    BOOTING  --retire------->  RETIRING
    BOOTING  --boot_timeout->  KILLED
    BOOTING  --exited------->  EXITED     a boot failure
    SERVING  --retire------->  RETIRING   SIGTERM: a reload or a stop
    SERVING  --silent------->  HUNG       SIGTERM; its replacement starts
    SERVING  --exited------->  EXITED     a crash
    RETIRING --overdue------>  KILLED     still draining past its deadline
    RETIRING --exited------->  EXITED
    HUNG     --resumed------>  RETIRING   it reported again: it drains
    HUNG     --overdue------>  KILLED     still silent after the grace
    HUNG     --exited------->  EXITED
    KILLED   --exited------->  EXITED

A silent shard is not killed outright: it gets SIGTERM, and SIGKILL only if it is still
silent after a short grace. If its loop turns again within the grace (a handler that
blocked for a long while returned), it reports, runs its SIGTERM drain like any retiring
shard, and its clients get their close frames.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

from socketspec import metrics


class ShardState(enum.Enum):
    BOOTING = "booting"  # forked; has not said Ready
    SERVING = "serving"  # said Ready; reports at least every REPORT_INTERVAL
    RETIRING = "retiring"  # told to stop (SIGTERM: reload or shutdown); draining
    HUNG = "hung"  # silent for --shard-timeout: sent SIGTERM, SIGKILL after a short grace
    KILLED = "killed"  # sent SIGKILL (still hung, a boot that took too long, a drain overdue)
    EXITED = "exited"  # reaped


class ShardEvent(enum.Enum):
    READY = "ready"  # the Ready message arrived
    RETIRE = "retire"  # the supervisor sent SIGTERM
    SILENT = "silent"  # no report for --shard-timeout: its event loop is blocked
    RESUMED = "resumed"  # a hung shard reported again: its loop turns and drains
    BOOT_TIMEOUT = "boot_timeout"  # not ready within the boot timeout
    OVERDUE = "overdue"  # still running past its deadline to stop (drain or grace)
    EXITED = "exited"  # waitpid returned it


class IllegalTransition(Exception):
    def __init__(self, state: ShardState, event: ShardEvent) -> None:
        super().__init__(f"a shard in state {state.name} cannot take event {event.name}")
        self.state = state
        self.event = event


TRANSITIONS: dict[tuple[ShardState, ShardEvent], ShardState] = {
    (ShardState.BOOTING, ShardEvent.READY): ShardState.SERVING,
    (ShardState.BOOTING, ShardEvent.RETIRE): ShardState.RETIRING,
    (ShardState.BOOTING, ShardEvent.BOOT_TIMEOUT): ShardState.KILLED,
    (ShardState.BOOTING, ShardEvent.EXITED): ShardState.EXITED,
    (ShardState.SERVING, ShardEvent.RETIRE): ShardState.RETIRING,
    (ShardState.SERVING, ShardEvent.SILENT): ShardState.HUNG,
    (ShardState.SERVING, ShardEvent.EXITED): ShardState.EXITED,
    (ShardState.RETIRING, ShardEvent.OVERDUE): ShardState.KILLED,
    (ShardState.RETIRING, ShardEvent.EXITED): ShardState.EXITED,
    (ShardState.HUNG, ShardEvent.RESUMED): ShardState.RETIRING,
    (ShardState.HUNG, ShardEvent.OVERDUE): ShardState.KILLED,
    (ShardState.HUNG, ShardEvent.EXITED): ShardState.EXITED,
    (ShardState.KILLED, ShardEvent.EXITED): ShardState.EXITED,
}

# States whose process serves the index or is about to: while one exists for an index, the
# supervisor starts no other replacement for it.
LIVE = frozenset({ShardState.BOOTING, ShardState.SERVING})


def next_state(state: ShardState, event: ShardEvent) -> ShardState:
    """The state ``event`` moves ``state`` to; records the move's metric."""
    try:
        target = TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None
    _record(state, event)
    return target


def _record(state: ShardState, event: ShardEvent) -> None:
    if event is ShardEvent.SILENT:
        metrics.shard_timeouts.inc()
    elif state is ShardState.BOOTING and event in (ShardEvent.EXITED, ShardEvent.BOOT_TIMEOUT):
        metrics.shard_boot_failures.inc()


class Liveness:
    """When each serving shard (by pid) last reported; who has been silent too long.

    A shard reports from its event loop, so a loop blocked by a handler goes silent while
    its process lives. Times are the supervisor's monotonic clock, given by the caller."""

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"the shard timeout must be positive, got {timeout}")
        self.timeout = timeout
        self._heard: dict[int, float] = {}

    def heard(self, pid: int, now: float) -> None:
        """``pid`` reported (or became ready) at ``now``."""
        self._heard[pid] = now

    def forget(self, pid: int) -> None:
        """``pid`` no longer serves (retired, killed, exited): its silence means nothing."""
        self._heard.pop(pid, None)

    def silent(self, now: float) -> Iterator[tuple[int, float]]:
        """(pid, seconds silent) of every watched shard silent for longer than the timeout."""
        for pid, last in list(self._heard.items()):
            if now - last > self.timeout:
                yield pid, now - last

    def next_deadline(self) -> float | None:
        """The earliest time at which a watched shard becomes overdue, if any is watched."""
        if not self._heard:
            return None
        return min(self._heard.values()) + self.timeout

    def __contains__(self, pid: object) -> bool:
        return pid in self._heard
