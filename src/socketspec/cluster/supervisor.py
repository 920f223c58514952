"""The supervisor: forks the shards, watches them, restarts them, stops them.

Owns the process tree. Signal handlers only record the signal and wake the
loop through a pipe; one loop reaps children (``waitpid`` without blocking),
reads the shards' readiness pipes, restarts a shard that died (at once, then
with backoff while it keeps dying), and acts on signals: SIGTERM/SIGINT stop
every shard (they drain) and exit 0, killing what remains after the graceful
timeout; SIGHUP reloads the application code and replaces the shards one by
one, each new shard ready before its predecessor is told to stop. A shard
that fails while booting stops the whole cluster with its reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import logging
import os
import secrets
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
from urllib.parse import urlsplit, urlunsplit

from socketspec import metrics
from socketspec.app import SocketApp
from socketspec.cluster import metrics_http
from socketspec.cluster.codec import BootFailed, PipeDecoder, PipeProtocolError, Ready
from socketspec.cluster.metrics_http import MetricsEndpoint
from socketspec.cluster.worker import run_worker
from socketspec.loader import ENTRY_POINT_GROUP, load_app
from socketspec.server.config import ServerConfig

logger = logging.getLogger("socketspec.supervisor")

BOOT_TIMEOUT = 30.0
STABLE_AFTER = 5.0  # a shard that lived this long after boot restarts at once when it dies
MAX_BACKOFF = 10.0
KILL_MARGIN = 5.0  # past graceful + close timeouts, what is left is killed


class ClusterBootError(Exception):
    """A shard could not boot; the cluster stops with this reason."""


@dataclass
class ShardProcess:
    index: int
    pid: int
    generation: int
    ready_fd: int
    started: float
    decoder: PipeDecoder = field(default_factory=PipeDecoder)
    ready_at: float | None = None
    retiring: bool = False  # told to stop (reload or shutdown); its exit is expected


class Supervisor:
    def __init__(
        self,
        app: SocketApp | None,
        config: ServerConfig,
        workers: int,
        app_spec: str | None = None,
        reload_app: Callable[[], SocketApp] | None = None,
        metrics_host: str = "127.0.0.1",
        metrics_port: int | None = 9100,
    ) -> None:
        self.app = app
        if config.redis_url and not config.node_id:
            # Names this node in Redis and in its connection ids; fresh on every start, so a
            # restarted node is not mistaken for the one that died.
            config = dataclasses.replace(config, node_id=secrets.token_hex(4))
        self.config = config
        self.workers = workers
        self.app_spec = app_spec
        self.reload_app = reload_app
        self.shards: dict[int, ShardProcess] = {}  # the serving process of each index
        self.retiring: dict[int, ShardProcess] = {}  # by pid
        self._generation = 0
        self._deaths: dict[int, int] = {}  # consecutive quick deaths per index
        self._restart_at: dict[int, float] = {}
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        self.run_dir = Path(tempfile.mkdtemp(prefix="socketspec-"))
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port  # None: no endpoint
        self.metrics: MetricsEndpoint | None = None

    # -- signals ---------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)  # only enqueue; the loop acts
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b".")

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, index: int) -> ShardProcess:
        self._generation += 1
        generation = self._generation
        ready_r, ready_w = os.pipe()
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.close(ready_r)
                os.close(self._wake_r)
                os.close(self._wake_w)
                code = run_worker(
                    self.app,
                    self.config,
                    index,
                    self.workers,
                    generation,
                    self.run_dir,
                    ready_w,
                    supervisor_pid,
                )
            finally:
                os._exit(code)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        process = ShardProcess(index, pid, generation, ready_r, time.monotonic())
        self.shards[index] = process
        return process

    def _read_ready(self, process: ShardProcess) -> None:
        try:
            data = os.read(process.ready_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return
        try:
            messages = process.decoder.feed(data)
        except PipeProtocolError:
            return
        for message in messages:
            if isinstance(message, Ready):
                process.ready_at = time.monotonic()
                logger.info("shard %s ready (pid %s)", process.index, process.pid)
                self._count_shards_up()
            elif isinstance(message, BootFailed):
                raise ClusterBootError(f"shard {message.shard} failed to boot: {message.reason}")

    def _close_pipe(self, process: ShardProcess) -> None:
        with contextlib.suppress(OSError):
            os.close(process.ready_fd)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            metrics_http.retire(pid)
            retired = self.retiring.pop(pid, None)
            if retired is not None:
                self._close_pipe(retired)
                continue
            process = next((p for p in self.shards.values() if p.pid == pid), None)
            if process is None:
                continue
            self._read_ready(process)  # a BootFailed may still sit in the pipe
            self._close_pipe(process)
            del self.shards[process.index]
            self._count_shards_up()
            if process.ready_at is None:
                raise ClusterBootError(
                    f"shard {process.index} exited with code {code} while booting"
                )
            self._schedule_restart(process, code)

    def _schedule_restart(self, process: ShardProcess, code: int) -> None:
        lived = time.monotonic() - (process.ready_at or process.started)
        if lived >= STABLE_AFTER:
            self._deaths[process.index] = 0
        deaths = self._deaths.get(process.index, 0)
        delay = 0.0 if deaths == 0 else min(MAX_BACKOFF, 0.1 * 2 ** (deaths - 1))
        self._deaths[process.index] = deaths + 1
        self._restart_at[process.index] = time.monotonic() + delay
        logger.warning(
            "shard %s (pid %s) exited with code %s; restarting in %.1fs",
            process.index,
            process.pid,
            code,
            delay,
        )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[index]
                metrics.shard_restarts.inc()
                self._spawn(index)

    # -- the loop --------------------------------------------------------------------------------

    def _count_shards_up(self) -> None:
        metrics.shards_up.set(sum(1 for p in self.shards.values() if p.ready_at is not None))

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a readiness message, a scrape or ``timeout``."""
        fds = [self._wake_r] + [p.ready_fd for p in self.shards.values() if p.ready_at is None]
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
        for process in list(self.shards.values()):
            if process.ready_at is None:
                self._read_ready(process)

    def _tick_timeout(self) -> float:
        if not self._restart_at:
            return 1.0
        return max(0.0, min(1.0, min(self._restart_at.values()) - time.monotonic()))

    def run(self) -> int:
        self._install_signals()
        metrics_http.reset_metrics_dir()
        metrics.shards_configured.set(self.workers)
        metrics.shards_up.set(0)
        reservation = self._reserve_port()
        try:
            if self.metrics_port is not None:
                try:
                    self.metrics = MetricsEndpoint(self.metrics_host, self.metrics_port)
                except OSError as exc:
                    raise ClusterBootError(
                        f"cannot serve metrics on {self.metrics_host}:{self.metrics_port}: "
                        f"{exc.strerror or exc}"
                    ) from None
            for index in range(self.workers):
                self._spawn(index)
            self._wait_until_ready(list(self.shards.values()))
            if reservation is not None:
                reservation.close()
                reservation = None
            self._announce()
            while True:
                self._wait(self._tick_timeout())
                signals, self._signals = self._signals, []
                for signum in signals:
                    if signum in (signal.SIGTERM, signal.SIGINT):
                        return self._shutdown()
                    if signum == signal.SIGHUP:
                        self._reload()
                self._reap()
                self._restart_due()
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

    def _wait_until_ready(self, processes: list[ShardProcess]) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT
        while any(p.ready_at is None for p in processes):
            if time.monotonic() > deadline:
                raise ClusterBootError(f"shards did not become ready within {BOOT_TIMEOUT:g}s")
            self._wait(0.2)
            self._reap()
            if any(s in (signal.SIGTERM, signal.SIGINT) for s in self._signals):
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
        pids = ", ".join(str(p.pid) for p in sorted(self.shards.values(), key=lambda p: p.index))
        print(
            f"socketspec-cluster: {self.workers} shard(s) (pids {pids}) listening on "
            f"{scheme}://{config.host}:{config.port}{config.path}",
            flush=True,
        )
        print(
            f"socketspec-cluster: health at {http_scheme}://{config.host}:{config.port}/healthz",
            flush=True,
        )
        if self.app is not None and self.app.docs:
            print(
                f"socketspec-cluster: docs at {http_scheme}://{config.host}:{config.port}"
                f"{self.app.docs_url}",
                flush=True,
            )
        if config.redis_url:
            print(
                f"socketspec-cluster: node {config.node_id} shares rooms through "
                f"{_redacted(config.redis_url)}",
                flush=True,
            )
        if self.metrics is not None:
            print(
                f"socketspec-cluster: metrics at http://{self.metrics.host}:{self.metrics.port}"
                "/metrics",
                flush=True,
            )

    # -- stopping and reloading ------------------------------------------------------------------

    def _signal_all(self, signum: int, processes: list[ShardProcess]) -> None:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    def _shutdown(self) -> int:
        processes = list(self.shards.values()) + list(self.retiring.values())
        for process in self.shards.values():
            process.retiring = True
            self.retiring[process.pid] = process
        self.shards.clear()
        self._restart_at.clear()
        self._signal_all(signal.SIGTERM, processes)
        deadline = (
            time.monotonic()
            + self.config.graceful_timeout
            + self.config.close_timeout
            + KILL_MARGIN
        )
        while self.retiring and time.monotonic() < deadline:
            self._wait(0.1)
            self._reap_retiring()
        if self.retiring:
            logger.warning("killing %d shard(s) still running after the grace", len(self.retiring))
            self._signal_all(signal.SIGKILL, list(self.retiring.values()))
            while self.retiring:
                self._wait(0.1)
                self._reap_retiring()
        return 0

    def _reap_retiring(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.retiring.clear()
                return
            if pid == 0:
                return
            metrics_http.retire(pid)
            process = self.retiring.pop(pid, None)
            if process is not None:
                self._close_pipe(process)

    def _reload(self) -> None:
        """SIGHUP: new code, shard by shard, each replacement serving before its predecessor
        stops, so the port always has a listener."""
        if self.reload_app is not None:
            try:
                app = self.reload_app()
                app.startup()
            except Exception as exc:
                logger.error(
                    "reload failed, keeping the running code: %s: %s", type(exc).__name__, exc
                )
                return
            self.app = app
        logger.info("rolling restart of %d shard(s)", self.workers)
        for index in range(self.workers):
            old = self.shards.get(index)
            new = self._spawn(index)
            self._wait_until_ready([new])
            if old is not None:
                old.retiring = True
                self.retiring[old.pid] = old
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old.pid, signal.SIGTERM)


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
