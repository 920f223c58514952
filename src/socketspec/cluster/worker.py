"""A shard's life after fork: links, room store, listener, readiness, serving, exit.

Owns booting one shard inside a forked child: the cluster room store, its
links to the other shards (when there are several) and its bridge to Redis
(with ``--redis``; a Redis that is down does not stop the boot) and the recovery secret
the nodes agree on through it, binding this shard's own
SO_REUSEPORT listener, telling the supervisor it is ready (or why it could not
boot) over its pipe, then reporting that its event loop turns (``Alive``, every
``REPORT_INTERVAL``, from the loop itself: a blocked loop goes silent), serving
until SIGTERM/SIGINT, draining, and the exit code. Does not own restarts or
signals to other shards (the supervisor does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import secrets
import signal
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from socketspec import logs
from socketspec.app import SocketApp
from socketspec.cluster.bridge import NodeBridge
from socketspec.cluster.codec import Alive, BootFailed, Ready, encode
from socketspec.cluster.store import ClusterRoomStore
from socketspec.errors import CloseCode
from socketspec.recovery import SECRET_ENV
from socketspec.server.config import ServerConfig
from socketspec.server.shard import Shard

if TYPE_CHECKING:  # the Redis package is imported only when a Redis URL is given
    from socketspec.cluster.redis.settings import RedisSettings

logger = logging.getLogger("socketspec.cluster")

# How long a booting shard waits for links to every peer before serving anyway
# (a peer that is down links up when it comes back).
BOOT_LINK_WAIT = 5.0
PR_SET_PDEATHSIG = 1
# How often a serving shard tells the supervisor its loop turns; --shard-timeout is at least
# twice this, so one late report never gets a shard killed.
REPORT_INTERVAL = 0.5


def die_with_parent(supervisor_pid: int) -> None:
    """A shard must not outlive its supervisor (nothing would restart, reload or stop it):
    ask Linux to send SIGTERM (a drain) when the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(
    app: SocketApp | None,
    config: ServerConfig,
    index: int,
    shards: int,
    generation: int,
    run_dir: Path,
    ready_fd: int,
    supervisor_pid: int,
    redis: RedisSettings | None = None,
) -> int:
    """Runs in the forked child; returns its exit code."""
    inherited = (signal.SIGHUP, signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)
    for signum in inherited:
        signal.signal(signum, signal.SIG_DFL)
    # The supervisor forks with these blocked; now that the defaults are back, a SIGTERM
    # that arrived meanwhile stops this shard as it should.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, inherited)
    die_with_parent(supervisor_pid)
    logs.set_shard(index)
    ready = False
    # Never block the loop on the pipe: a supervisor that does not read for a while costs
    # reports (it then sees silence), not a stalled shard.
    os.set_blocking(ready_fd, False)

    def report(message: Ready | BootFailed | Alive) -> None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, encode(message))

    def report_alive(loop: asyncio.AbstractEventLoop) -> None:
        report(Alive(index))
        loop.call_later(REPORT_INTERVAL, report_alive, loop)

    async def main() -> None:
        nonlocal ready
        store: ClusterRoomStore | None = None
        if app is not None and (shards > 1 or redis is not None):
            store = ClusterRoomStore(
                index,
                shards,
                generation,
                run_dir,
                redis_url=redis.url if redis is not None else None,
                node=redis.node_id if redis is not None else "",
                node_ttl=redis.node_ttl if redis is not None else 15.0,
            )
            app.use_store(store)
            store.kick = lambda conn_id, reason: kick(app, conn_id, reason)
            await store.start()
            if redis is not None:
                await agree_on_recovery_secret(app, store.bridge)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(store.links.all_linked.wait(), BOOT_LINK_WAIT)
        shard = Shard(app, config, index)
        await shard.start()
        if store is not None and shard.ctx is not None:
            links = store.links
            shard.ctx.peers = lambda: {
                peer: links.is_up(peer) for peer in range(shards) if peer != index
            }
        report(Ready(index, os.getpid()))
        ready = True
        report_alive(asyncio.get_running_loop())
        try:
            await shard.serve()
        finally:
            if store is not None:
                await store.close()

    try:
        uvloop.run(main())
    except BaseException as exc:
        if not ready:
            reason = f"{type(exc).__name__}: {exc}".strip()
            report(BootFailed(index, reason.splitlines()[0] if reason else "unknown error"))
            logger.error("shard %s failed to boot:\n%s", index, traceback.format_exc())
        else:
            logger.exception("shard %s crashed", index)
        return 1
    finally:
        os.close(ready_fd)
    return 0


async def agree_on_recovery_secret(app: SocketApp, bridge: NodeBridge) -> None:
    """With Redis and no secret of the app's own, every node signs recovery tokens with the
    one they agree on through Redis (this cluster's, drawn by its supervisor, if it is the
    first), so that a client recovers on any node."""
    recovery = app.recovery
    if recovery is None or recovery.secret is not None:
        return
    candidate = os.environ.get(SECRET_ENV) or secrets.token_hex(32)
    app.set_recovery_secret(await bridge.shared_secret(candidate))


async def kick(app: SocketApp, conn_id: str, reason: str) -> None:
    """Another shard called ``disconnect`` on a proxy of one of our connections."""
    runtime = app.runtime(conn_id)
    if runtime is not None:
        await app.close_connection(runtime.conn, CloseCode.NORMAL, reason)

