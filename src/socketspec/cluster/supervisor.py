"""The supervisor: forks the shards, watches them, restarts them, stops them.

Owns the process tree. Signal handlers only record the signal and wake the
loop through a pipe; one loop reaps children (``waitpid`` without blocking),
reads the shards' pipes (readiness, then a liveness report every half second),
and moves each shard through the states of ``cluster.lifecycle``. What the
supervisor does on each move:

- Only the very first boot may stop the cluster: a shard that cannot boot then
  stops it with its reason (exit 1). Later, a replacement that fails to boot
  (or is killed while booting) is logged and started again with backoff.
- A serving shard that dies is replaced at once, then with backoff while it
  keeps dying. One silent for ``--shard-timeout`` (its event loop is blocked)
  gets SIGTERM and, still silent ``HUNG_GRACE`` later, SIGKILL; its replacement
  starts at once. A loop that turns again within the grace drains as on a stop.
- SIGTERM/SIGINT stop every shard (they drain) and exit 0, killing what remains
  after the graceful timeout. SIGHUP (or, with ``--reload``, a changed source
  file) reloads the application code and replaces the shards one by one, each
  new shard serving before its predecessor is told to stop; when the new code
  does not import, or a new shard does not boot, the old shards keep serving
  and the log says why.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import importlib
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from socketspec import metrics
from socketspec.app import SocketApp
from socketspec.cluster import metrics_http
from socketspec.cluster.codec import Alive, BootFailed, LinkDecoder, LinkProtocolError, Ready
from socketspec.cluster.lifecycle import LIVE, Liveness, ShardEvent, ShardState, next_state
from socketspec.cluster.metrics_http import MetricsEndpoint
from socketspec.cluster.watch import SourceWatcher
from socketspec.cluster.worker import run_worker
from socketspec.loader import ENTRY_POINT_GROUP, load_app
from socketspec.recovery import draw_cluster_environment
from socketspec.server.config import ServerConfig

if TYPE_CHECKING:  # the Redis package is imported only when a Redis URL is given
    from socketspec.cluster.redis.settings import RedisSettings

logger = logging.getLogger("socketspec.supervisor")

BOOT_TIMEOUT = 30.0
STABLE_AFTER = 5.0  # a shard that lived this long after boot restarts at once when it dies
MAX_BACKOFF = 10.0
KILL_MARGIN = 5.0  # past graceful + close timeouts, what is left is killed
# SIGTERM to SIGKILL for a shard that went silent: long enough for a loop that was blocked a
# moment too long to report again and drain, short because its clients already waited.
HUNG_GRACE = 3.0
# SIGTERM to SIGKILL for a shard stopped before it was ready: it has no clients to drain.
BOOTING_GRACE = 2.0
DEFAULT_SHARD_TIMEOUT = 10.0
MAX_TICK = 1.0  # the loop wakes at least this often (timers, --reload polling)
WATCH_INTERVAL = 1.0  # --reload: seconds between two snapshots of the sources
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class ClusterBootError(Exception):
    """A shard could not boot during the cluster's first boot; the cluster stops."""


class ClusterPhase(enum.Enum):
    STARTING = "starting"  # the first boot: a shard that cannot boot stops the cluster
    RUNNING = "running"  # every failure is logged and repaired
    STOPPING = "stopping"  # every shard is retiring; nothing is restarted


@dataclass
class ShardProcess:
    index: int
    pid: int
    generation: int
    pipe_fd: int  # -1 once the shard closed its end
    started: float
    decoder: LinkDecoder = field(default_factory=LinkDecoder)
    state: ShardState = ShardState.BOOTING
    changed_at: float = 0.0  # when it entered its state
    ready_at: float | None = None
    failure: str | None = None  # the reason a BootFailed message gave
    kill_at: float | None = None  # told to stop (RETIRING, HUNG): SIGKILL if alive by then


class Supervisor:
    def __init__(
        self,
        app: SocketApp | None,
        config: ServerConfig,
        workers: int,
        app_spec: str | None = None,
        reload_app: Callable[[], SocketApp] | None = None,
        metrics_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        metrics_token: str | None = None,
        shard_timeout: float = DEFAULT_SHARD_TIMEOUT,
        watcher: SourceWatcher | None = None,
        redis: RedisSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        send_signal: Callable[[int, int], None] = os.kill,
    ) -> None:
        self.app = app
        # Every decision reads this clock and every signal goes through send_signal, so the
        # decisions can be tested without processes.
        self._clock = clock
        self._send_signal = send_signal
        # The node id names this node in Redis and in its connection ids.
        self.redis = redis.with_node_id() if redis is not None else None
        self.config = config
        self.workers = workers
        self.app_spec = app_spec
        self.reload_app = reload_app
        self.phase = ClusterPhase.STARTING
        self.processes: dict[int, ShardProcess] = {}  # every child not yet reaped, by pid
        self.liveness = Liveness(shard_timeout)
        self.watcher = watcher
        self._watch_at = 0.0  # when --reload next snapshots the sources
        self._generation = 0
        self._deaths: dict[int, int] = {}  # consecutive quick deaths per index
        self._restart_at: dict[int, float] = {}
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self.run_dir = Path(tempfile.mkdtemp(prefix="socketspec-"))
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port  # None: no port of its own (the cluster port serves)
        self.metrics_token = metrics_token
        self.metrics: MetricsEndpoint | None = None

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)  # only enqueue; the loop acts
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b".")

    def _install_signals(self) -> None:
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _stop_requested(self) -> bool:
        return any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals)

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, index: int) -> ShardProcess:
        self._generation += 1
        generation = self._generation
        pipe_r, pipe_w = os.pipe()
        supervisor_pid = os.getpid()
        # Held back across the fork: a signal that reaches the child before it has reset the
        # supervisor's handlers would be queued in the child's copy and lost (a SIGTERM sent
        # to a shard in its first microseconds would not stop it). The child unblocks them
        # once its own handlers are in place (``run_worker``); the parent at once.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        pid = os.fork()
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        if pid == 0:  # the child
            code = 1
            try:
                os.close(pipe_r)
                os.close(self._wake_r)
                os.close(self._wake_w)
                code = run_worker(
                    self.app,
                    self.config,
                    index,
                    self.workers,
                    generation,
                    self.run_dir,
                    pipe_w,
                    supervisor_pid,
                    self.redis,
                )
            finally:
                os._exit(code)
        os.close(pipe_w)
        os.set_blocking(pipe_r, False)
        now = self._clock()
        process = ShardProcess(index, pid, generation, pipe_r, now, changed_at=now)
        self.processes[pid] = process
        return process

    def _move(self, process: ShardProcess, event: ShardEvent) -> None:
        """The one place a shard changes state (the table records its metric)."""
        process.state = next_state(process.state, event)
        process.changed_at = self._clock()
        if process.state is ShardState.SERVING:
            self.liveness.heard(process.pid, process.changed_at)
        else:
            self.liveness.forget(process.pid)
        self._count_shards_up()

    def _live(self, index: int) -> list[ShardProcess]:
        """The processes that serve ``index`` or are booting to."""
        return [p for p in self.processes.values() if p.index == index and p.state in LIVE]

    def _serving(self, index: int) -> ShardProcess | None:
        serving = [
            p for p in self.processes.values() if p.index == index and p.state is ShardState.SERVING
        ]
        return max(serving, key=lambda p: p.generation) if serving else None

    def _read_pipe(self, process: ShardProcess) -> None:
        if process.pipe_fd < 0:
            return
        try:
            data = os.read(process.pipe_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the shard closed its end (it is exiting)
            self._close_pipe(process)
            return
        try:
            messages = process.decoder.feed(data)
        except LinkProtocolError:
            return
        now = self._clock()
        for message in messages:
            if isinstance(message, Alive):
                if process.pid in self.liveness:
                    self.liveness.heard(process.pid, now)
                elif process.state is ShardState.HUNG:
                    self._move(process, ShardEvent.RESUMED)
                    process.kill_at = now + self._drain_limit()
                    logger.warning(
                        "shard %s (pid %s) reports again after SIGTERM; it drains (its "
                        "replacement is already starting)",
                        process.index,
                        process.pid,
                    )
            elif isinstance(message, Ready):
                if process.state is ShardState.BOOTING:
                    process.ready_at = now
                    self._move(process, ShardEvent.READY)
                    logger.info("shard %s ready (pid %s)", process.index, process.pid)
            elif isinstance(message, BootFailed):
                process.failure = message.reason

    def _close_pipe(self, process: ShardProcess) -> None:
        if process.pipe_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(process.pipe_fd)
            process.pipe_fd = -1

    def _kill(self, process: ShardProcess, event: ShardEvent) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._send_signal(process.pid, signal.SIGKILL)
        self._move(process, event)
        process.kill_at = None

    def _retire(self, process: ShardProcess) -> None:
        """SIGTERM: the shard drains and exits; its exit is expected. SIGKILL follows if it
        is still running past the drain (or, before it was ready, a short grace)."""
        grace = BOOTING_GRACE if process.state is ShardState.BOOTING else self._drain_limit()
        with contextlib.suppress(ProcessLookupError):
            self._send_signal(process.pid, signal.SIGTERM)
        self._move(process, ShardEvent.RETIRE)
        process.kill_at = process.changed_at + grace

    def _hang_up(self, process: ShardProcess, silent_for: float) -> None:
        """A serving shard went silent: SIGTERM now, SIGKILL after ``HUNG_GRACE`` if it
        stays silent, and its replacement starts at once."""
        logger.error(
            "shard %s (pid %s) sent no liveness report for %.1fs (its event loop is "
            "blocked); sending SIGTERM, SIGKILL in %gs if it stays silent",
            process.index,
            process.pid,
            silent_for,
            HUNG_GRACE,
        )
        with contextlib.suppress(ProcessLookupError):
            self._send_signal(process.pid, signal.SIGTERM)
        self._move(process, ShardEvent.SILENT)
        process.kill_at = process.changed_at + HUNG_GRACE
        self._schedule_restart(process, "hung")

    def _drain_limit(self) -> float:
        return self.config.graceful_timeout + self.config.close_timeout + KILL_MARGIN

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # nothing left to wait for
                for orphan in list(self.processes.values()):
                    self._exited(orphan, -1)
                return
            if pid == 0:
                return
            metrics_http.retire(pid)
            process = self.processes.get(pid)
            if process is not None:
                self._exited(process, os.waitstatus_to_exitcode(status))

    def _exited(self, process: ShardProcess, code: int) -> None:
        self._read_pipe(process)  # a BootFailed may still sit in the pipe
        self._close_pipe(process)
        del self.processes[process.pid]
        was = process.state
        self._move(process, ShardEvent.EXITED)
        if was is ShardState.RETIRING or self.phase is ClusterPhase.STOPPING:
            return
        if was is ShardState.BOOTING:
            reason = process.failure or f"exited with code {code}"
            if self.phase is ClusterPhase.STARTING:
                raise ClusterBootError(f"shard {process.index} failed to boot: {reason}")
            serving = self._serving(process.index)
            if serving is not None:
                logger.error(
                    "shard %s (pid %s) failed to boot: %s; pid %s keeps serving it",
                    process.index,
                    process.pid,
                    reason,
                    serving.pid,
                )
                return
            self._schedule_restart(process, f"failed to boot ({reason})")
            return
        if was in (ShardState.KILLED, ShardState.HUNG):
            # A hung shard's replacement is already starting: this schedules nothing then.
            self._schedule_restart(process, f"was killed (exit code {code})")
            return
        self._schedule_restart(process, f"exited with code {code}")

    def _schedule_restart(self, process: ShardProcess, what: str) -> None:
        if self._live(process.index) or process.index in self._restart_at:
            return  # another process serves it already (a reload's successor)
        lived = self._clock() - (process.ready_at or process.started)
        if process.ready_at is not None and lived >= STABLE_AFTER:
            self._deaths[process.index] = 0
        deaths = self._deaths.get(process.index, 0)
        delay = 0.0 if deaths == 0 else min(MAX_BACKOFF, 0.1 * 2 ** (deaths - 1))
        self._deaths[process.index] = deaths + 1
        self._restart_at[process.index] = self._clock() + delay
        logger.warning(
            "shard %s (pid %s) %s; restarting in %.1fs", process.index, process.pid, what, delay
        )

    def _restart_due(self) -> None:
        if self.phase is ClusterPhase.STOPPING:
            return
        now = self._clock()
        for index, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[index]
                metrics.shard_restarts.inc()
                self._spawn(index)

    def _check_timers(self) -> None:
        """Boots that take too long, serving shards gone silent, stops that overrun."""
        now = self._clock()
        for pid, silent_for in list(self.liveness.silent(now)):
            self._hang_up(self.processes[pid], silent_for)
        for process in list(self.processes.values()):
            age = now - process.changed_at
            if process.state is ShardState.BOOTING and age > BOOT_TIMEOUT:
                if self.phase is ClusterPhase.STARTING:
                    raise ClusterBootError(f"shards did not become ready within {BOOT_TIMEOUT:g}s")
                logger.error(
                    "shard %s (pid %s) not ready within %gs; killing it",
                    process.index,
                    process.pid,
                    BOOT_TIMEOUT,
                )
                self._kill(process, ShardEvent.BOOT_TIMEOUT)
            elif process.kill_at is not None and now >= process.kill_at:
                # RETIRING or HUNG: the only states with a deadline to stop
                logger.warning(
                    "shard %s (pid %s) still %s %.1fs after SIGTERM; sending SIGKILL",
                    process.index,
                    process.pid,
                    "silent" if process.state is ShardState.HUNG else "running",
                    age,
                )
                self._kill(process, ShardEvent.OVERDUE)

    # -- the loop --------------------------------------------------------------------------------

    def _count_shards_up(self) -> None:
        metrics.shards_up.set(
            len({p.index for p in self.processes.values() if p.state is ShardState.SERVING})
        )

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a pipe message, a scrape or ``timeout``."""
        pipes = {p.pipe_fd: p for p in self.processes.values() if p.pipe_fd >= 0}
        fds = [self._wake_r, *pipes]
        if self.metrics is not None:
            fds.append(self.metrics.fileno())
        readable: list[int] = []
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(fds, [], [], timeout)
        if self.metrics is not None and self.metrics.fileno() in readable:
            self.metrics.serve_pending()
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass
        for fd in readable:
            process = pipes.get(fd)
            if process is not None:
                self._read_pipe(process)

    def _step(self, timeout: float) -> None:
        """One turn of the loop: wait, reap, act on timers, start the restarts due."""
        self._wait(timeout)
        self._reap()
        self._check_timers()
        self._restart_due()

    def _tick_timeout(self) -> float:
        now = self._clock()
        deadlines = list(self._restart_at.values())
        deadlines += [p.kill_at for p in self.processes.values() if p.kill_at is not None]
        liveness = self.liveness.next_deadline()
        if liveness is not None:
            deadlines.append(liveness + 0.01)
        if not deadlines:
            return MAX_TICK
        return max(0.0, min(MAX_TICK, min(deadlines) - now))

    def run(self) -> int:
        self._install_signals()
        # Inherited by every shard and every restart of one: a recovery token signed by a
        # shard is honoured by the others and by its successors.
        draw_cluster_environment(os.environ, redis=self.redis is not None)
        metrics_http.reset_metrics_dir()
        metrics.shards_configured.set(self.workers)
        metrics.shards_up.set(0)
        reservation = self._reserve_port()
        try:
            if self.metrics_port is not None:
                try:
                    self.metrics = MetricsEndpoint(
                        self.metrics_host, self.metrics_port, self.metrics_token
                    )
                except OSError as exc:
                    raise ClusterBootError(
                        f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: "
                        f"{exc.strerror or exc}"
                    ) from None
            for index in range(self.workers):
                self._spawn(index)
            self._first_boot()
            if reservation is not None:
                reservation.close()
                reservation = None
            self.phase = ClusterPhase.RUNNING
            self._announce()
            while True:
                self._step(self._tick_timeout())
                signals, self._signals = self._signals, []
                for signum in signals:
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        return self._shutdown()
                    if signum == signal.SIGHUP:
                        self._reload("SIGHUP")
                self._watch_sources()
        except ClusterBootError as exc:
            print(f"socketspec-cluster: error: {exc}", file=sys.stderr, flush=True)
            self._shutdown()
            return 1
        finally:
            if reservation is not None:
                reservation.close()
            if self.metrics is not None:
                self.metrics.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
            metrics_http.remove_owned_metrics_dir()

    def _watch_sources(self) -> None:
        """--reload: at most one snapshot a second (the loop turns more often, on every
        liveness report); a change reloads."""
        now = self._clock()
        if self.watcher is None or now < self._watch_at:
            return
        self._watch_at = now + WATCH_INTERVAL
        changed = self.watcher.poll()
        if changed:
            self._reload(f"{changed[0]} changed")

    def _first_boot(self) -> None:
        """Until every index serves; a shard that cannot boot now stops the cluster."""
        while any(self._serving(index) is None for index in range(self.workers)):
            self._step(0.2)
            if self._stop_requested():
                raise ClusterBootError("stopped while booting")

    def _reserve_port(self) -> socket.socket | None:
        """With --port 0, pick one port for every shard: hold it bound (not listening) while
        the shards bind it with SO_REUSEPORT."""
        if self.config.port != 0:
            return None
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.config.host, 0))
        port = sock.getsockname()[1]
        self.config = ServerConfig(**{**self.config.__dict__, "port": port})
        return sock

    def _announce(self) -> None:
        config = self.config
        scheme = "wss" if config.certfile else "ws"
        http_scheme = "https" if config.certfile else "http"
        serving = [self._serving(index) for index in range(self.workers)]
        pids = ", ".join(str(p.pid) for p in serving if p is not None)
        base = f"{http_scheme}://{config.host}:{config.port}"
        print(
            f"socketspec-cluster: {self.workers} shard(s) (pids {pids}) listening on "
            f"{scheme}://{config.host}:{config.port}{config.path}",
            flush=True,
        )
        print(f"socketspec-cluster: health at {base}/healthz", flush=True)
        if self.app is not None and self.app.docs:
            print(f"socketspec-cluster: docs at {base}{self.app.docs_url}", flush=True)
        if self.redis is not None:
            print(
                f"socketspec-cluster: node {self.redis.node_id} shares rooms through "
                f"{_redacted(self.redis.url)}",
                flush=True,
            )
        if config.serve_metrics:
            print(f"socketspec-cluster: metrics at {base}/metrics", flush=True)
        if self.metrics is not None:
            print(
                f"socketspec-cluster: metrics also at http://{self.metrics.host}:"
                f"{self.metrics.port}/metrics",
                flush=True,
            )
        if self.watcher is not None:
            print(
                f"socketspec-cluster: reloading when one of {len(self.watcher)} source "
                "file(s) changes",
                flush=True,
            )

    # -- stopping and reloading ------------------------------------------------------------------

    def _shutdown(self) -> int:
        self.phase = ClusterPhase.STOPPING
        self._restart_at.clear()
        for process in list(self.processes.values()):
            if process.state in LIVE:
                self._retire(process)
        # A shard still draining past the graceful and close timeouts is killed (timers).
        while self.processes:
            self._wait(0.1)
            self._reap()
            self._check_timers()
        return 0

    def _reload(self, why: str) -> None:
        """New code, shard by shard, each replacement serving before its predecessor stops,
        so the port always has a listener. New code that does not import, or a replacement
        that does not boot, leaves the old shards serving."""
        previous = self.app
        if self.reload_app is not None:
            try:
                app = self.reload_app()
                app.startup()
            except Exception as exc:
                logger.error(
                    "reload (%s) failed, keeping the running code: %s: %s",
                    why,
                    type(exc).__name__,
                    exc,
                )
                return
            self.app = app
        logger.info("rolling restart of %d shard(s) (%s)", self.workers, why)
        for index in range(self.workers):
            # The new shard takes over a restart still waiting for its backoff, too.
            self._restart_at.pop(index, None)
            new = self._spawn(index)
            while new.state is ShardState.BOOTING:
                if self._stop_requested():
                    return  # the loop acts on the signal; the stop retires every shard
                self._step(0.2)
            if new.state is not ShardState.SERVING:
                if index == 0:
                    self.app = previous  # no shard runs the new code: restarts keep the old
                logger.error(
                    "reload (%s) failed, keeping the old shards: the new shard %s (pid %s) "
                    "did not boot: %s; %d of %d shard(s) run the new code",
                    why,
                    index,
                    new.pid,
                    new.failure or "it exited",
                    index,
                    self.workers,
                )
                return
            # Its predecessor, and a replacement of a crashed one that was booting the old
            # code meanwhile: one process serves each index.
            for predecessor in self._live(index):
                if predecessor is not new:
                    self._retire(predecessor)


def purge_application_modules(app_spec: str | None) -> None:
    """Forget the application's modules so that importing them again reads the new code."""
    roots: set[str] = set()
    if app_spec:
        roots.add(app_spec.partition(":")[0].split(".")[0])
    else:
        roots.update(entry.module.split(".")[0] for entry in entry_points(group=ENTRY_POINT_GROUP))
    cwd = os.getcwd() + os.sep
    for name, module in list(sys.modules.items()):
        top = name.split(".")[0]
        path = getattr(module, "__file__", None) or ""
        own_code = path.startswith(cwd) and "site-packages" not in path
        if top in {"socketspec", "__main__"}:
            continue
        if top in roots or own_code:
            del sys.modules[name]
    importlib.invalidate_caches()


def reloader(app_spec: str | None) -> Callable[[], SocketApp]:
    def reload() -> SocketApp:
        purge_application_modules(app_spec)
        return load_app(app_spec)

    return reload


def enable_request_migration() -> None:
    """Ask the kernel to hand connections queued on a closing listener to another listener of
    the same SO_REUSEPORT group, so that a shard stopping never refuses a connection. Needs
    Linux 5.14 and the right to change the setting; without them the window is small."""
    path = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
            logger.info("enabled net.ipv4.tcp_migrate_req for loss-free shard restarts")
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        logger.info(
            "net.ipv4.tcp_migrate_req unavailable: a restarting shard may drop "
            "connections queued at that instant"
        )


def _redacted(url: str) -> str:
    """A Redis URL without its password, for the log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
