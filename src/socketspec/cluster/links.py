"""Links between shards: one Unix-socket connection per pair, carrying link frames.

Owns the I/O around the link codec: listening on this instance's own socket in
the cluster's run directory, connecting to every live instance of every peer
(retrying while the cluster boots) and to this shard's draining predecessor,
the ``Hello`` exchange that names a link's shard and generation, coalescing
writes (one ``write`` per peer per event-loop iteration), the bound on unsent
bytes and its overflow policy, and the life of peer instances: a peer's
replacement says hello with a newer generation, and takes over the peer's
traffic when it says ``Handover`` (it has heard from every live instance who
its members are: ``Rejoin``); the older instance stays linked until it exits,
for its draining connections. An instance is down when it says ``Goodbye`` or
its last link closes. What the other messages mean is the room store's
business: it receives them through ``LinkHandler``.

Overflow policy: a peer whose unsent bytes pass ``LINK_HIGH_WATER`` is not
keeping up; further messages to it are dropped and counted in
``socketspec_pipe_dropped_total`` until it drains below the mark, so one slow shard cannot
grow another's memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from socketspec import metrics
from socketspec.cluster.codec import (
    MESSAGES,
    Goodbye,
    Handover,
    Hello,
    LinkDecoder,
    LinkMessage,
    LinkProtocolError,
    Rejoin,
    encode,
)
from socketspec.errors import IllegalTransitionError
from socketspec.metrics import TALLY

logger = logging.getLogger("socketspec.cluster")

LINK_HIGH_WATER = 32 * 1024 * 1024
_SENT = {kind: metrics.pipe_sent.labels(kind=kind) for kind in MESSAGES}
_RECEIVED = {kind: metrics.pipe_received.labels(kind=kind) for kind in MESSAGES}
CONNECT_RETRY_INTERVAL = 0.05
CONNECT_RETRY_WINDOW = 10.0
PREDECESSOR_WAIT = 1.0
GOODBYE_WAIT = 1.0


class LinkPhase(Enum):
    LIVE = "live"  # carries the traffic of its peer instance
    LEAVING = "leaving"  # we exit: our Goodbye is sent; we still send until the link closes
    RETIRED = "retired"  # its instance exits: it said Goodbye, we answered; we route nothing
    CLOSED = "closed"


LINK_PHASES: dict[LinkPhase, frozenset[LinkPhase]] = {
    LinkPhase.LIVE: frozenset({LinkPhase.LEAVING, LinkPhase.RETIRED, LinkPhase.CLOSED}),
    LinkPhase.LEAVING: frozenset({LinkPhase.CLOSED}),
    LinkPhase.RETIRED: frozenset({LinkPhase.CLOSED}),
    LinkPhase.CLOSED: frozenset(),
}
ROUTED = frozenset({LinkPhase.LIVE, LinkPhase.LEAVING})


class OwnRooms(Enum):
    """Whether this instance is the home of its shard's rooms for the cluster."""

    # Linking: every instance we are linked to tells us its members of our rooms; a
    # predecessor, if one serves, is still their home and peers still send to it.
    STARTING = "starting"
    HOME = "home"  # we said Handover to every instance: peers send our rooms' traffic to us
    HANDED_OVER = "handed_over"  # our successor said Handover to us: we drain


OWN_ROOMS: dict[OwnRooms, frozenset[OwnRooms]] = {
    OwnRooms.STARTING: frozenset({OwnRooms.HOME, OwnRooms.HANDED_OVER}),
    OwnRooms.HOME: frozenset({OwnRooms.HANDED_OVER}),
    OwnRooms.HANDED_OVER: frozenset(),
}


def _check(table: dict[Any, frozenset[Any]], what: str, current: Enum, target: Enum) -> None:
    if target not in table[current]:
        raise IllegalTransitionError(
            f"{what} cannot move from state {current.value!r} to {target.value!r}"
        )


class LinkHandler(Protocol):
    def on_message(self, peer: int, generation: int, message: LinkMessage) -> None: ...

    def on_peer_up(self, peer: int, generation: int) -> None: ...

    def on_peer_down(self, peer: int, generation: int) -> None: ...


def socket_path(run_dir: Path, shard: int, generation: int) -> Path:
    """Each instance of a shard listens on its own socket: during a rolling restart the
    old and the new instance are both reachable."""
    return run_dir / f"shard-{shard}-{generation}.sock"


def instance_paths(run_dir: Path, shard: int) -> list[tuple[int, Path]]:
    """The sockets of the instances of ``shard`` in the run directory, oldest first (a
    killed instance's socket stays behind and refuses connections)."""
    found: list[tuple[int, Path]] = []
    for path in run_dir.glob(f"shard-{shard}-*.sock"):
        generation = path.stem.rpartition("-")[2]
        if generation.isdigit():
            found.append((int(generation), path))
    return sorted(found)


class UnixSocketLink(asyncio.Protocol):
    """One end of a link; the peer is unknown until its Hello arrives."""

    def __init__(self, manager: LinkManager) -> None:
        self.manager = manager
        self.peer: int | None = None
        self.generation = -1
        self.transport: asyncio.Transport | None = None
        self._decoder = LinkDecoder()
        self._outbox: list[bytes] = []
        self._flush_scheduled = False
        self.closed = asyncio.get_running_loop().create_future()
        self.phase = LinkPhase.LIVE
        # Done when the peer's Goodbye came: nothing more comes in on this link.
        self.heard_goodbye = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        me = self.manager
        me.unnamed.add(self)
        self.send(Hello(me.shard, me.generation))

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._decoder.feed(data)
        except LinkProtocolError:
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
            elif isinstance(message, Handover):
                manager.handed_over(self)
            elif isinstance(message, Goodbye):
                manager.said_goodbye(self)
            elif self.peer is not None:
                manager.handler.on_message(self.peer, self.generation, message)
                if isinstance(message, Rejoin):
                    manager.rejoined(self)

    def move(self, phase: LinkPhase) -> LinkPhase:
        """Enter ``phase``; returns the phase left."""
        left = self.phase
        _check(LINK_PHASES, f"link to shard {self.peer}", left, phase)
        self.phase = phase
        return left

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        self.manager.unregister(self)

    def send(self, message: LinkMessage) -> bool:
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

    def flush(self) -> None:
        """Write what is queued now rather than at the end of this loop iteration (a history
        room's home writes the copies before its own members' frames)."""
        if self._outbox:
            self._flush()

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
        self._current: dict[int, UnixSocketLink] = {}
        # One link per live instance (peer, generation): a draining predecessor of a peer
        # stays reachable beside its replacement until it exits.
        self._instances: dict[tuple[int, int], UnixSocketLink] = {}
        # A newer instance of this shard, once it linked to us: we are draining. Once it is
        # linked to every peer it hands over, and is the home of this shard's rooms.
        self._successor: UnixSocketLink | None = None
        self.own_rooms = OwnRooms.STARTING
        # The instances that told us their members of our rooms (a Rejoin): we hand over
        # once every instance we are linked to has, and we are linked to every peer.
        self._rejoined: set[tuple[int, int]] = set()
        self.unnamed: set[UnixSocketLink] = set()  # connected links whose Hello has not come yet
        # What must be done before we hand over (with Redis: subscribed to the channels of
        # the rooms we are told of), and the task waiting for it.
        self.before_handover: Callable[[], Awaitable[None]] | None = None
        self._settling: asyncio.Task[None] | None = None
        # Told of every move of ``own_rooms`` (left, entered): a history room's broadcasts
        # are positioned only once this instance is their home and its history is rebuilt,
        # and a predecessor tells its successor when it positions no more.
        self.on_own_rooms: Callable[[OwnRooms, OwnRooms], None] | None = None
        # Set when our predecessor (if any) has handed us its members of our rooms.
        self.predecessor_ready = asyncio.Event()
        self._links: set[UnixSocketLink] = set()
        self._server: asyncio.AbstractServer | None = None
        self._connectors: set[asyncio.Task[None]] = set()
        self.all_linked = asyncio.Event()
        if shards <= 1:
            self.all_linked.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        path = socket_path(self.run_dir, self.shard, self.generation)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await loop.create_unix_server(lambda: UnixSocketLink(self), path=str(path))
        # A predecessor still serving (a rolling restart) is linked to first: it hands this
        # instance its members of the rooms homed here (before any peer can send us a
        # broadcast for them; bounded: a hung predecessor never answers) and drains beside it.
        dialed = [
            await self._dial(other)
            for generation, other in instance_paths(self.run_dir, self.shard)
            if generation < self.generation
        ]
        if any(dialed):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.predecessor_ready.wait(), PREDECESSOR_WAIT)
        for peer in range(self.shards):
            if peer != self.shard:
                task = loop.create_task(self._connect(peer))
                self._connectors.add(task)
                task.add_done_callback(self._connected)
        self._maybe_hand_over()  # alone (one shard), or no peer up yet: nothing to wait for

    def _connected(self, task: asyncio.Task[None]) -> None:
        self._connectors.discard(task)
        self._maybe_hand_over()

    async def _dial(self, path: Path) -> bool:
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().create_unix_connection(
                lambda: UnixSocketLink(self), path=str(path)
            )
            return True
        return False

    async def _connect(self, peer: int) -> None:
        """Reach every live instance of ``peer`` (a draining one too); if none is up, the
        peer will reach us when it starts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_RETRY_WINDOW
        dialed: set[Path] = set()
        while loop.time() < deadline and not self._linked_to(peer):
            for _, path in instance_paths(self.run_dir, peer):
                if path not in dialed and await self._dial(path):
                    dialed.add(path)
            if not self._linked_to(peer):
                await asyncio.sleep(CONNECT_RETRY_INTERVAL)

    def _linked_to(self, peer: int) -> bool:
        return peer in self._current

    async def close(self) -> None:
        for task in list(self._connectors):
            task.cancel()
        if self._settling is not None:
            self._settling.cancel()
        if self._server is not None:
            self._server.close()
        links = list(self._links)
        # Goodbye on every link, and wait (bounded) for every answer: what peers sent before
        # it is handled (fanned out) before the links close.
        for link in links:
            if link.phase is LinkPhase.LIVE:
                link.send(Goodbye(self.shard, self.generation))
                link.move(LinkPhase.LEAVING)
        answers = [link.heard_goodbye for link in links if link.peer is not None]
        if answers:
            await asyncio.wait(answers, timeout=GOODBYE_WAIT)
        for link in links:
            link.close()
        for link in links:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(link.closed), 1.0)
        with contextlib.suppress(OSError):
            socket_path(self.run_dir, self.shard, self.generation).unlink()

    # -- registry --------------------------------------------------------------------------------

    def register(self, link: UnixSocketLink) -> None:
        peer = link.peer
        assert peer is not None
        self.unnamed.discard(link)
        self._links.add(link)
        generation = link.generation
        self._instances.setdefault((peer, generation), link)
        if peer == self.shard:
            # Another instance of this very shard: our predecessor (it is home of our rooms
            # until we hand over) or our successor (we tell it our members of our rooms).
            if generation > self.generation and self._successor is None:
                self._successor = link
                self.handler.on_peer_up(peer, generation)
        else:
            current = self._current.get(peer)
            if current is None:
                self._current[peer] = link
            # Our members of the rooms it is (or will be) home to, to that very instance.
            # A newer instance takes over the peer's traffic only when it hands over: until
            # then its predecessor, which knows every member, stays the home.
            if current is None or current.generation < generation:
                self.handler.on_peer_up(peer, generation)
            if len(self._current) == self.shards - 1:
                self.all_linked.set()
        self._maybe_hand_over()

    def rejoined(self, link: UnixSocketLink) -> None:
        """The instance on ``link`` told us its members of our rooms."""
        if link.peer is not None:
            self._rejoined.add((link.peer, link.generation))
            if link.peer == self.shard:
                self.predecessor_ready.set()
            self._maybe_hand_over()

    def _ready_to_hand_over(self) -> bool:
        """Linked to every peer and told by every instance we are linked to who its members
        of our rooms are: we know them all."""
        return (
            self.own_rooms is OwnRooms.STARTING
            and self.all_linked.is_set()
            and not self._connectors  # instances still to dial
            and not self.unnamed  # ... or to hear from
            and all(instance in self._rejoined for instance in self._instances)
        )

    def _maybe_hand_over(self) -> None:
        if not self._ready_to_hand_over():
            return
        if self.before_handover is None:
            self._hand_over()
        elif self._settling is None:
            self._settling = asyncio.get_running_loop().create_task(self._hand_over_settled())

    async def _hand_over_settled(self) -> None:
        assert self.before_handover is not None
        try:
            await self.before_handover()
        finally:
            self._settling = None
        if self._ready_to_hand_over():
            self._hand_over()

    def _hand_over(self) -> None:
        """We become the home of our rooms for everyone, at once."""
        self._move_own_rooms(OwnRooms.HOME)
        logger.info(
            "shard %s (generation %s) is the home of its rooms", self.shard, self.generation
        )
        for link in self._instances.values():
            link.send(Handover(self.shard, self.generation))

    def _move_own_rooms(self, target: OwnRooms) -> None:
        _check(OWN_ROOMS, "this shard's rooms", self.own_rooms, target)
        left, self.own_rooms = self.own_rooms, target
        if self.on_own_rooms is not None:
            self.on_own_rooms(left, target)

    @property
    def superseded(self) -> bool:
        """Our successor is the home of this shard's rooms: their traffic goes to it."""
        return self.own_rooms is OwnRooms.HANDED_OVER

    @property
    def predecessor_linked(self) -> bool:
        """An older instance of this shard is still linked to us (it drains)."""
        return any(
            shard == self.shard and generation < self.generation
            for shard, generation in self._instances
        )

    @property
    def home_of_own_rooms(self) -> bool:
        """This instance acts as the home of its shard's rooms now: it has not handed them
        over, and no predecessor still serves as their home."""
        if self.own_rooms is OwnRooms.STARTING:
            return not self.predecessor_linked
        return self.own_rooms is OwnRooms.HOME

    def said_goodbye(self, link: UnixSocketLink) -> None:
        """The instance on ``link`` exits: it is down for us from now on, and our answer
        tells it that nothing more comes from us. (If we are exiting too, its Goodbye is
        the answer to ours.) The link stays open: what it still sends (the fan-out of our
        last broadcasts) is read until it closes the link."""
        if not link.heard_goodbye.done():
            link.heard_goodbye.set_result(None)
        if link.phase is LinkPhase.LIVE:
            link.send(Goodbye(self.shard, self.generation))
            self._unroute(link, LinkPhase.RETIRED)

    def handed_over(self, link: UnixSocketLink) -> None:
        """A newer instance of a shard knows every member of its rooms: it is their home
        now. For this shard's own rooms (our successor), what our home did goes to it."""
        peer = link.peer
        if peer is None or link.phase not in ROUTED:
            return
        if peer == self.shard:
            if link is self._successor and not self.superseded:
                self._move_own_rooms(OwnRooms.HANDED_OVER)
            return
        current = self._current.get(peer)
        if current is None or current.generation < link.generation:
            self._current[peer] = link
            # Joins since our first word to it went to its predecessor: all our members again.
            self.handler.on_peer_up(peer, link.generation)

    def unregister(self, link: UnixSocketLink) -> None:
        self.unnamed.discard(link)
        self._links.discard(link)
        self._unroute(link, LinkPhase.CLOSED)

    def _unroute(self, link: UnixSocketLink, phase: LinkPhase) -> None:
        """``link`` enters ``phase`` and carries nothing more for us: another link to the
        same instance takes over, or the instance is down for us (reported once, whether
        it said goodbye or its link closed)."""
        if link.phase is phase:
            return
        routed = link.move(phase) in ROUTED
        peer = link.peer
        if peer is None or not routed:
            return
        instance = (peer, link.generation)
        # Another live link to the same instance can take over sending.
        for other in self._links:
            if other.peer == peer and other.generation == link.generation and other.phase in ROUTED:
                if self._instances.get(instance) is link:
                    self._instances[instance] = other
                if self._current.get(peer) is link:
                    self._current[peer] = other
                if self._successor is link:
                    self._successor = other
                return
        if self._instances.get(instance) is link:
            del self._instances[instance]
        self._rejoined.discard(instance)
        if self._successor is link:
            self._successor = None  # it died: what it was home to is unreachable for now
        self.handler.on_peer_down(peer, link.generation)
        if self._current.get(peer) is link:
            newest = max(
                (other for (shard, _), other in self._instances.items() if shard == peer),
                key=lambda other: other.generation,
                default=None,
            )
            if newest is None:
                del self._current[peer]
                self.all_linked.clear()
            else:  # its successor takes over its traffic
                self._current[peer] = newest
                self.handler.on_peer_up(peer, newest.generation)
        self._maybe_hand_over()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, peer: int, message: LinkMessage) -> bool:
        """Send to the newest instance of ``peer``; for this shard's own index, to the other
        instance of it: our successor, else our newest predecessor."""
        link = self._other_instance() if peer == self.shard else self._current.get(peer)
        if link is None:
            TALLY.add(metrics.pipe_dropped)
            return False
        return link.send(message)

    def _other_instance(self) -> UnixSocketLink | None:
        if self._successor is not None:
            return self._successor
        older = [
            link
            for (shard, generation), link in self._instances.items()
            if shard == self.shard and generation < self.generation
        ]
        return max(older, key=lambda link: link.generation, default=None)

    def send_to_instance(self, peer: int, generation: int, message: LinkMessage) -> bool:
        """Send to that very instance of ``peer`` (a member's shard as it was when it
        joined), even while a newer instance has taken over the peer's other traffic."""
        link = self._instances.get((peer, generation))
        if link is None:
            TALLY.add(metrics.pipe_dropped)
            return False
        return link.send(message)

    def predecessors(self, peer: int) -> list[UnixSocketLink]:
        """Links to older instances of ``peer`` (another shard) that are still draining."""
        current = self._current.get(peer)
        if current is None or peer == self.shard:
            return []
        return [
            link
            for (shard, generation), link in self._instances.items()
            if shard == peer and generation < current.generation
        ]

    def instances_of(self, peer: int) -> list[UnixSocketLink]:
        """A link to every live instance of ``peer`` (for this shard's own index, the
        other instances of it)."""
        return [link for (shard, _), link in self._instances.items() if shard == peer]

    def instances(self) -> list[UnixSocketLink]:
        """One link to every live instance of every peer, draining ones included."""
        return list(self._instances.values())

    def is_up(self, peer: int) -> bool:
        return peer in self._current

    def live_peers(self) -> list[int]:
        return list(self._current)

    def generation_of(self, peer: int) -> int | None:
        link = self._successor if peer == self.shard else self._current.get(peer)
        return None if link is None else link.generation
