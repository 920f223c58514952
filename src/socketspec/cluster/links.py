"""Links between shards: one Unix-socket connection per pair, carrying pipe frames.

Owns the I/O around the pipe codec: listening on this shard's socket in the
cluster's run directory, connecting to every peer (retrying while the cluster
boots), the ``Hello`` exchange that names a link's shard and generation,
coalescing writes (one ``write`` per peer per event-loop iteration), the bound
on unsent bytes and its overflow policy, and noticing a peer's death (its link
closes) or replacement (a newer generation says hello; the older one stays linked
until it exits, for its draining connections). What the messages
mean is the room store's business: it receives them through ``LinkHandler``.

Overflow policy: a peer whose unsent bytes pass ``LINK_HIGH_WATER`` is not
keeping up; further messages to it are dropped and counted in
``socketspec_pipe_dropped_total`` until it drains below the mark, so one slow shard cannot
grow another's memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Protocol

from socketspec import metrics
from socketspec.cluster.codec import (
    MESSAGES,
    Hello,
    PipeDecoder,
    PipeMessage,
    PipeProtocolError,
    encode,
)
from socketspec.metrics import TALLY

logger = logging.getLogger("socketspec.cluster")

LINK_HIGH_WATER = 32 * 1024 * 1024
_SENT = {kind: metrics.pipe_sent.labels(kind=kind) for kind in MESSAGES}
_RECEIVED = {kind: metrics.pipe_received.labels(kind=kind) for kind in MESSAGES}
CONNECT_RETRY_INTERVAL = 0.05
CONNECT_RETRY_WINDOW = 10.0


class LinkHandler(Protocol):
    def on_message(self, peer: int, generation: int, message: PipeMessage) -> None: ...

    def on_peer_up(self, peer: int, generation: int) -> None: ...

    def on_peer_down(self, peer: int, generation: int) -> None: ...


def socket_path(run_dir: Path, shard: int) -> Path:
    return run_dir / f"shard-{shard}.sock"


class PipeLink(asyncio.Protocol):
    """One end of a link; the peer is unknown until its Hello arrives."""

    def __init__(self, manager: LinkManager) -> None:
        self.manager = manager
        self.peer: int | None = None
        self.generation = -1
        self.transport: asyncio.Transport | None = None
        self._decoder = PipeDecoder()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        me = self.manager
        self.send(Hello(me.shard, me.generation))

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except PipeProtocolError:
            logger.exception("shard %s: corrupt pipe from shard %s", self.manager.shard, self.peer)
            if self.transport is not None:
                self.transport.abort()
            return
        manager = self.manager
        for message in messages:
            TALLY.add(_RECEIVED[message.KIND])
            if isinstance(message, Hello):
                self.peer = message.shard
                self.generation = message.generation
                manager.register(self)
            elif self.peer is not None:
                manager.handler.on_message(self.peer, self.generation, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.manager.unregister(self)

    def send(self, message: PipeMessage) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            TALLY.add(metrics.pipe_dropped)
            return False
        if transport.get_write_buffer_size() > LINK_HIGH_WATER:
            TALLY.add(metrics.pipe_dropped)
            return False
        TALLY.add(_SENT[message.KIND])
        self._outbox.append(encode(message))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if self.transport is not None and outbox:
            self.transport.write(b"".join(outbox))

    def close(self) -> None:
        if self.transport is not None:
            self._flush()
            self.transport.close()


class LinkManager:
    def __init__(
        self,
        shard: int,
        shards: int,
        generation: int,
        run_dir: Path,
        handler: LinkHandler,
    ) -> None:
        self.shard = shard
        self.shards = shards
        self.generation = generation
        self.run_dir = run_dir
        self.handler = handler
        # The link each peer's messages go out on: its newest generation's first link.
        self._current: dict[int, PipeLink] = {}
        # One link per live instance (peer, generation): a draining predecessor of a peer
        # stays reachable beside its replacement until it exits.
        self._instances: dict[tuple[int, int], PipeLink] = {}
        self._links: set[PipeLink] = set()
        self._server: asyncio.AbstractServer | None = None
        self._bound: tuple[int, int] | None = None  # our socket file, to remove only ours
        self._connectors: set[asyncio.Task[None]] = set()
        self.all_linked = asyncio.Event()
        if shards <= 1:
            self.all_linked.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        path = socket_path(self.run_dir, self.shard)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a predecessor's; the new shard takes over its name
        self._server = await loop.create_unix_server(lambda: PipeLink(self), path=str(path))
        stat = path.stat()
        self._bound = (stat.st_dev, stat.st_ino)
        for peer in range(self.shards):
            if peer != self.shard:
                task = loop.create_task(self._connect(peer))
                self._connectors.add(task)
                task.add_done_callback(self._connectors.discard)

    async def _connect(self, peer: int) -> None:
        """Reach ``peer`` if it is up; if it is not, it will reach us when it starts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_RETRY_WINDOW
        path = str(socket_path(self.run_dir, peer))
        while loop.time() < deadline and not self._linked_to(peer):
            try:
                await loop.create_unix_connection(lambda: PipeLink(self), path=path)
                return
            except OSError:
                await asyncio.sleep(CONNECT_RETRY_INTERVAL)

    def _linked_to(self, peer: int) -> bool:
        return peer in self._current

    async def close(self) -> None:
        for task in list(self._connectors):
            task.cancel()
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(link.closed), 1.0)
        # A replacement may already have bound this path: remove the file only if it is ours.
        path = socket_path(self.run_dir, self.shard)
        with contextlib.suppress(OSError):
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) == self._bound:
                path.unlink()

    # -- registry --------------------------------------------------------------------------------

    def register(self, link: PipeLink) -> None:
        peer = link.peer
        assert peer is not None
        self._links.add(link)
        instance = (peer, link.generation)
        self._instances.setdefault(instance, link)
        current = self._current.get(peer)
        if current is not None and current.generation >= link.generation:
            return  # a second link to the same instance: it still carries its messages in
        self._current[peer] = link
        # A newer instance of the peer said hello: its predecessor is draining. Its links
        # stay up, so that its connections keep receiving their rooms' messages until
        # their close frames are sent; it is down for us when its last link closes.
        self.handler.on_peer_up(peer, link.generation)
        if len(self._current) == self.shards - 1:
            self.all_linked.set()

    def unregister(self, link: PipeLink) -> None:
        self._links.discard(link)
        peer = link.peer
        if peer is None:
            return
        instance = (peer, link.generation)
        # Another live link to the same instance can take over sending.
        for other in self._links:
            if other.peer == peer and other.generation == link.generation:
                if self._instances.get(instance) is link:
                    self._instances[instance] = other
                if self._current.get(peer) is link:
                    self._current[peer] = other
                return
        if self._instances.get(instance) is link:
            del self._instances[instance]
        if self._current.get(peer) is link:
            del self._current[peer]
            self.all_linked.clear()
        self.handler.on_peer_down(peer, link.generation)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, peer: int, message: PipeMessage) -> bool:
        link = self._current.get(peer)
        if link is None:
            TALLY.add(metrics.pipe_dropped)
            return False
        return link.send(message)

    def send_to_instance(self, peer: int, generation: int, message: PipeMessage) -> bool:
        """Send to that very instance of ``peer`` (a member's shard as it was when it
        joined), even while a newer instance has taken over the peer's other traffic."""
        link = self._instances.get((peer, generation))
        if link is None:
            TALLY.add(metrics.pipe_dropped)
            return False
        return link.send(message)

    def predecessors(self, peer: int) -> list[PipeLink]:
        """Links to older instances of ``peer`` that are still draining."""
        current = self._current.get(peer)
        newest = current.generation if current is not None else None
        return [
            link
            for (shard, generation), link in self._instances.items()
            if shard == peer and generation != newest
        ]

    def instances(self) -> list[PipeLink]:
        """One link to every live instance of every peer, draining ones included."""
        return list(self._instances.values())

    def is_up(self, peer: int) -> bool:
        return peer in self._current

    def live_peers(self) -> list[int]:
        return list(self._current)

    def generation_of(self, peer: int) -> int | None:
        link = self._current.get(peer)
        return None if link is None else link.generation
