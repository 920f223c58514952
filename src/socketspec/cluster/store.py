"""The cluster room store: room actors on each room's home shard, reached through pipes.

Owns room membership when the application runs on several shards. A room's
home is a stable hash of its name (CRC-32, the same in every process); the
home shard's room actor is the single owner of that room's membership, checks
``max_members`` atomically, and orders the room's broadcasts: a broadcast goes
to the home, which sends one ``Deliver`` per shard that has members (and
delivers to its own), so every member sees a room's messages in one order and
each shard frames a message once for all its members. The home also counts the
members it fanned a broadcast out to and answers a sender on another shard with that
count (docs/cluster.md, "What broadcast returns"). Each shard keeps its own
index of which local connections are in which room (a ``LocalIndex``, as
``MemoryRoomStore`` keeps for its process), and a connection's id
names its shard, so a direct emit goes straight there.

When a peer shard dies, its members are dropped from the rooms homed here at
once, and asks pending on it fail. A shard instance being replaced (a rolling
restart) is not dead: homes fan out per instance (a member is recorded with its
shard and generation), so its draining members get their rooms' messages until
they are closed; it stays the home of its shard's rooms until its successor,
told by every instance who their members are, hands over, then forwards it
what still arrives; its members leave the rooms when it exits. While a room's home is down, a
broadcast to it is sent by the sender to every live shard directly (counted in
``socketspec_broadcasts_total{path="degraded"}``) and joins to it fail visibly; when the home's
replacement says hello, every shard sends it its own members of the rooms
homed there, and the rooms are whole again.

A room with history (docs/cluster.md, "Room history across shards") is positioned at its
home: each broadcast gets the next offset of the room's ring and goes, as a ``Deliver``
carrying its position, to every live instance, each of which keeps a copy; such a
broadcast never takes the degraded path (it waits for the home). A new home is rebuilt
from the copies every instance sends it (``HistorySync``) before it positions anything. A
recovering connection is a member again through the home (``RecoverRequest``), its replay
delivered as the answer is read, and its old session is resumed on the shard its id names
(``Resume``).

With Redis (``--redis``), a room spans nodes: each node's home actor records
its node's members in Redis (``max_members`` is then checked there, across
nodes), publishes the broadcasts it orders once, and fans out the ones other
nodes publish to its node's shards (``cluster/redis/``). A connection
id then also names its node, so a direct emit to a connection on another node
goes to that node's shard through Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Container, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from socketspec import envelope, metrics
from socketspec.backends.base import JoinResult, LocalMember, ParkedAcks, RoomStore
from socketspec.backends.home import RoomHome
from socketspec.backends.local import LocalIndex, deliver
from socketspec.cluster.addresses import locate, new_connection_id
from socketspec.cluster.asks import (
    ASK_TIMEOUT,
    Asks,
    PeerRef,
    RoomUnavailableError,
    unavailable,
)
from socketspec.cluster.bridge import NodeBridge, NullBridge
from socketspec.cluster.codec import (
    Deliver,
    EmitTo,
    ExistsRequest,
    HistorySync,
    JoinRequest,
    Kick,
    Leave,
    LinkMessage,
    MembersRequest,
    Positioned,
    Publish,
    RecoverReply,
    RecoverRequest,
    Rejoin,
    Reply,
    Resume,
    join_frames,
    split_frames,
)
from socketspec.cluster.links import PREDECESSOR_WAIT, LinkManager, OwnRooms, UnixSocketLink
from socketspec.cluster.router import Handler, LinkRouter
from socketspec.connection import Connection, Identity, SessionInfo, utcnow
from socketspec.history import (
    Coverage,
    HistoryBook,
    HistoryEntry,
    HistoryPolicy,
    Position,
    Replay,
    RoomHistory,
)
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

if TYPE_CHECKING:  # the Redis package is imported only when a Redis URL is given
    from socketspec.cluster.redis.codec import RemoteMember

logger = logging.getLogger("socketspec.cluster")

# How many broadcast origins a shard remembers having delivered (oldest forgotten first): a
# home's copy and the sender's own copy of one broadcast (sent when the home died before
# answering) reach a shard within moments of each other, far fewer messages apart.
SEEN_ORIGINS = 4096
# How long a broadcast's home waits for Redis's reply to count the other nodes (the message
# has gone out by then: only the count waits), shorter than the sender's ASK_TIMEOUT.
REMOTE_COUNT_WAIT = 2.0
# How often expired history entries are dropped, ended rooms' histories discarded and the
# history gauges set.
HISTORY_SWEEP_INTERVAL = 2.0
# How long the history of a room without an age limit (ttl 0) outlives the room.
HISTORY_KEEP_AFTER_END = 300.0
# A home being rebuilt holds its history rooms' asks until it serves (bounded: past this
# many the newest are dropped, and their askers' deadlines tell them).
MAX_HELD = 10_000
# A starting home (a replacement, or at boot) fans out broadcasts of rooms without history
# only once every instance has told it its members, so none is missed for a member not yet
# known; but not later than this after it starts (a peer that never tells it must not stop
# its rooms; history rooms wait for the rebuild whatever it takes).
REBUILD_GRACE = 1.0
# While a history room's home is down, its senders retry this often (up to ASK_TIMEOUT).
HOME_RETRY_INTERVAL = 0.05
_HOME_BROADCASTS = metrics.broadcasts.labels(path="home")
_DEGRADED_BROADCASTS = metrics.broadcasts.labels(path="degraded")
MemberEntry = tuple[int, int, dict[str, Any]]  # shard, generation, info
# What a member listing carries: conn_id, shard, info, node ("" for this node).
ListedMember = tuple[str, int, dict[str, Any], str]
PendingJoin = JoinResult | asyncio.Future[Any]


def home_of(room: RoomName, shards: int) -> int:
    return zlib.crc32(room.encode("utf-8", "surrogatepass")) % shards


class ClusterRoomStore(RoomStore):
    def __init__(
        self,
        shard: int,
        shards: int,
        generation: int,
        run_dir: Path,
        *,
        redis_url: str | None = None,
        node: str = "",
        node_ttl: float = 15.0,
    ) -> None:
        self.shard = shard
        self.shards = shards
        self.generation = generation
        self.node = node  # 8 hex characters with Redis, "" without
        self.bridge: NodeBridge = NullBridge()
        if redis_url is not None:
            from socketspec.cluster.redis.bridge import RedisBridge

            self.bridge = RedisBridge(redis_url, node, shard, node_ttl, self)
        self.links = LinkManager(shard, shards, generation, run_dir, self)
        if self.bridge.spans_nodes:
            # Subscribed to the rooms we are told of before we are their home: the node's
            # messages for them are fanned out by our predecessor until then, by us after.
            self.links.before_handover = self.bridge.settled
        self.kick: Callable[[ConnectionId, str], Coroutine[Any, Any, None]] | None = None
        self._local = LocalIndex()
        # The room actors homed on this shard.
        self._home: RoomHome[MemberEntry] = RoomHome()
        self.asks = Asks()
        self._answering: set[asyncio.Task[Any]] = set()
        # The origins of the broadcasts delivered here, oldest first (SEEN_ORIGINS at most).
        self._seen_origins: dict[str, None] = {}
        # Room histories: the rings of the history rooms homed here, which assign positions,
        # and this shard's copies of every other history room's messages.
        self.history = HistoryBook(self.history_policy_for)
        # When each history was last written to or its room seen alive (monotonic seconds).
        self._history_touched: dict[RoomName, float] = {}
        # With Redis: the epoch this home positioned a room's messages in alone, while Redis
        # was down (Redis's offsets go on in Redis's epochs: ours must be another one).
        self._alone_epochs: dict[RoomName, str] = {}
        # History-room asks that came before this instance serves as the home of its rooms
        # (their histories are rebuilt from every instance's copies first), in arrival order.
        self._held: list[Callable[[], None]] = []
        # Broadcasts of rooms without history that wait for the members to be known, and the
        # timer that lets them go at REBUILD_GRACE after the start.
        self._held_plain: list[Callable[[], None]] = []
        self._plain_release: asyncio.TimerHandle | None = None
        self._history_served = asyncio.Event()
        # Once we are the home, until our draining predecessor says it positions no more.
        self._awaiting_predecessor: asyncio.TimerHandle | None = None
        self.links.on_own_rooms = self._own_rooms_moved
        self._sweeper: asyncio.Task[None] | None = None
        # Set by the app: close the session ``conn_id`` if it is open here and hand over
        # its stored ack replies (docs/recovery.md).
        self.on_resume: Callable[[ConnectionId], Awaitable[ParkedAcks]] | None = None
        self.router = LinkRouter(f"shard {shard}", self._routes())

    # -- identity and routing --------------------------------------------------------------------

    def home_of(self, room: RoomName) -> int:
        return home_of(room, self.shards)

    def _is_home(self, home: int) -> bool:
        """Whether this instance is the home for rooms homed on shard ``home``: not once a
        successor of this shard has linked to us (a rolling restart), which is their home
        from then on, while we drain."""
        return home == self.shard and not self.links.superseded

    def new_connection_id(self) -> ConnectionId:
        """A UUID4 whose first byte names this shard (and, with Redis, the last four this
        node), so any shard of any node can route to it. The rest stays random: the
        first characters still tell connections apart."""
        return new_connection_id(self.shard, self.node)

    def locate(self, conn_id: str) -> tuple[str, int] | None:
        """The node ("" without Redis) and shard a connection id names."""
        return locate(conn_id, with_node=bool(self.node))

    def owner_of(self, conn_id: str) -> int | None:
        """The shard of this node holding ``conn_id``; None for another node's or no one's."""
        located = self.locate(conn_id)
        if located is None:
            return None
        node, shard = located
        if node != self.node:
            return None
        return shard if shard < self.shards else None

    def _remote(self, conn_id: str) -> tuple[str, int] | None:
        """Another node's connection: its node and shard (only with Redis)."""
        located = self.locate(conn_id)
        if located is None or located[0] == self.node:
            return None
        return located

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.links.start()
        await self.bridge.start()
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep_history())
        if not self._history_served.is_set():
            self._plain_release = loop.call_later(REBUILD_GRACE, self._release_plain)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.bridge.close()
        await self.links.close()

    # -- RoomStore -------------------------------------------------------------------------------

    def declare_room(self, room: RoomName, *, static: bool, ttl: float) -> None:
        # Static rooms exist at their home only: the other shards ask it.
        self._home.declare(room, static=static and self.home_of(room) == self.shard, ttl=ttl)

    async def attach(self, member: LocalMember) -> None:
        self._local.attach(member)

    async def detach(self, conn_id: ConnectionId) -> list[RoomName]:
        left = self._local.detach(conn_id)
        for room in left:
            self._leave_at_home(room, conn_id)
        return left

    async def join(self, room: RoomName, conn_id: ConnectionId, max_members: int) -> JoinResult:
        return (await self._join(room, conn_id, max_members))[0]

    async def join_at(
        self, room: RoomName, conn_id: ConnectionId, max_members: int
    ) -> tuple[JoinResult, Position | None]:
        return await self._join(room, conn_id, max_members)

    async def _join(
        self, room: RoomName, conn_id: ConnectionId, max_members: int
    ) -> tuple[JoinResult, Position | None]:
        """A join decided at the room's home, and the room's history position when it was
        decided (None for a room without history)."""
        home = self.home_of(room)
        info = self._info(conn_id)
        if self._is_home(home):
            policy = self._policy(room)
            history = None
            if policy is not None:
                await self._until_history_served()
                history = self.history.open(room)
            pending = self._begin_join(
                room, conn_id, self.shard, self.generation, max_members, info
            )
            position = None if history is None else history.position
            shared = None if policy is None else self.bridge.history_position(room, policy)
            result = await self._finish_join(room, conn_id, max_members, pending)
            if result is not JoinResult.FULL and conn_id in self._local:
                self._local.join(room, conn_id)
            return result, await _shared_position(position, shared)

        asked = self.links.generation_of(home)

        def joined(value: Any) -> None:
            # Runs as the reply is read, before any later Deliver on the same link.
            if _join_reply(value)[0] is JoinResult.FULL:
                return
            self._joined_remotely(room, conn_id, info, home, asked)

        value = await self._ref(home).ask(
            lambda request: JoinRequest(request, room, conn_id, max_members, info), joined
        )
        return _join_reply(value)

    def _joined_remotely(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        info: dict[str, Any],
        home: int,
        asked: int | None,
    ) -> None:
        """The home recorded ``conn_id`` (a join or a recovery): it is in the local index
        from now on, or, if it left meanwhile, no ghost member stays at the home."""
        if conn_id in self._local:
            self._local.join(room, conn_id)
            # Another instance of the home (taking over from the one that answered, or
            # having taken over while the ask was in flight) hears of the member too.
            for link in self.links.instances_of(home):
                if link.generation != asked:
                    link.send(Rejoin([(room, conn_id, info)]))
        else:  # it left while the ask was in flight
            self._leave_at_home(room, conn_id)

    async def leave(self, room: RoomName, conn_id: ConnectionId) -> bool:
        if not self._local.leave(room, conn_id):
            return False
        self._leave_at_home(room, conn_id)
        return True

    async def members(self, room: RoomName) -> list[Connection]:
        own = self._local.get(room)
        if own is not None:
            return [own.conn]
        home = self.home_of(room)
        if self._is_home(home):
            entries = await self._listed_members(room)
        else:
            entries = await self._ref(home).ask(lambda request: MembersRequest(request, room))
        out: list[Connection] = []
        for conn_id, shard, info, node in entries:
            member = self._local.get(conn_id)
            if member is not None:
                out.append(member.conn)
            else:
                out.append(self._proxy(conn_id, shard, info, node))
        return out

    async def exists(self, room: RoomName) -> bool:
        if room in self._local:
            return True
        home = self.home_of(room)
        if self._is_home(home):
            return await self._exists_at_home(room)
        return bool(await self._ref(home).ask(lambda request: ExistsRequest(request, room)))

    async def recover(
        self, room: RoomName, conn_id: ConnectionId, since: Position | None
    ) -> Replay | None:
        if self._policy(room) is None:
            return await super().recover(room, conn_id, since)
        home = self.home_of(room)
        info = self._info(conn_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ASK_TIMEOUT
        while True:
            if self._is_home(home):
                await self._until_history_served()
                if not self._is_home(home):
                    continue  # handed over meanwhile: ask the successor
                replay = await self._replay_at_home(room, conn_id, since)
                # From here to the local join nothing awaits: the next message of the room
                # follows the replay.
                member = self._local.get(conn_id)
                if member is not None:  # (gone meanwhile: no ghost member at the home)
                    self._record_recovered(room, conn_id, self.shard, self.generation, info)
                    if replay.coverage is Coverage.COVERED:
                        for entry in replay.entries:
                            deliver(member, entry.frame)
                    self._local.join(room, conn_id)
                return replay
            try:
                return await self._recover_at(home, room, conn_id, since, info)
            except RoomUnavailableError:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(HOME_RETRY_INTERVAL)

    async def _recover_at(
        self,
        home: int,
        room: RoomName,
        conn_id: ConnectionId,
        since: Position | None,
        info: dict[str, Any],
    ) -> Replay:
        """Ask the room's home on another shard for the recovery of ``conn_id``."""
        asked = self.links.generation_of(home)

        def recovered(reply: Any) -> None:
            # Runs as the reply is read, before any later Deliver on the same link: the
            # replay, then the local join, so live messages follow with no gap.
            if not isinstance(reply, RecoverReply):
                return
            member = self._local.get(conn_id)
            if member is not None and reply.coverage == Coverage.COVERED.value:
                for frame in split_frames(reply.sizes, reply.frames):
                    deliver(member, frame)
            self._joined_remotely(room, conn_id, info, home, asked)

        since_text = None if since is None else str(since)
        reply = await self._ref(home).ask(
            lambda request: RecoverRequest(request, room, conn_id, since_text, info), recovered
        )
        return _replay_of(reply)

    async def resume(self, conn_id: ConnectionId) -> ParkedAcks:
        """Take over the session ``conn_id`` from the shard its id names: this one (the
        app's ``on_resume``), another shard of this node (a ``Resume`` ask to each of its
        live instances, newest first: a draining one may hold it), another node (closed
        there through the bridge; its acks are not carried across nodes), or a shard that
        is down (nothing to take over)."""
        located = self.locate(conn_id)
        if located is None:
            return None
        node, shard = located
        if node != self.node:
            self.bridge.kick(node, shard, conn_id, "session recovered on another node")
            return None
        if shard >= self.shards:
            return None
        if shard == self.shard:
            acks = await self._resume_here(conn_id)
            if acks is not None:
                return acks
        links = sorted(self.links.instances_of(shard), key=lambda link: -link.generation)
        for link in links:
            acks = await self._ask_resume(link, conn_id)
            if acks is not None:
                return acks
        return None

    async def _resume_here(self, conn_id: ConnectionId) -> ParkedAcks:
        if self.on_resume is None:
            return None
        return await self.on_resume(conn_id)

    async def _ask_resume(self, link: UnixSocketLink, conn_id: ConnectionId) -> ParkedAcks:
        if link.peer is None:
            return None
        request, answer = self.asks.open(link.peer)
        try:
            if not link.send(Resume(request, conn_id)):
                return None
            value = await asyncio.wait_for(answer, ASK_TIMEOUT)
        except (TimeoutError, RoomUnavailableError):
            return None  # that instance is gone (or hung): nothing to take over from it
        finally:
            self.asks.forget(request)
        return _parked_acks(value)

    async def _parked_json(self, conn_id: ConnectionId) -> Any:
        acks = await self._resume_here(conn_id)
        if acks is None:
            return None
        return [[ack_id, frame.decode("utf-8")] for ack_id, frame in acks]

    async def publish(
        self, room: RoomName, frame: bytes, exclude: frozenset[ConnectionId] = frozenset()
    ) -> int:
        own = self._local.get(room)
        if own is not None:
            return int(room not in exclude and deliver(own, frame))
        owner = self.owner_of(room)
        if owner is not None and owner != self.shard:
            # A connection on another shard: handed to its shard counts as one delivery.
            sent = room not in exclude and self.links.send(owner, EmitTo(0, room, frame))
            if room not in exclude:  # the connection may be on the owner's draining predecessor
                for link in self.links.predecessors(owner):
                    link.send(EmitTo(0, room, frame))
            return int(sent)
        remote = self._remote(room)
        if remote is not None:
            # A connection on another node: handed to Redis counts as one delivery.
            node, shard = remote
            return int(room not in exclude and self.bridge.send_direct(node, shard, room, frame))
        home = self.home_of(room)
        excluded = sorted(exclude)
        if self._policy(room) is not None:
            return await self._publish_history(room, frame, exclude, home)
        if self._is_home(home):
            count, counting = self._home_publish(room, frame, excluded)
            return await _with_remote(count, counting)
        # The home orders it (this shard's members get it through the home too) and answers
        # with the number of members it fanned it out to.
        request, answer = self.asks.open(home)
        origin = f"{self.node}:{self.shard}.{self.generation}.{request}"
        try:
            if self.links.send(home, Publish(room, excluded, frame, request, origin)):
                try:
                    return int(await asyncio.wait_for(answer, ASK_TIMEOUT))
                except TimeoutError:
                    # The home lives but is late: it fans the message out when it gets to
                    # it; the count is what this shard can vouch for.
                    return self._local.count(room, exclude)
                except RoomUnavailableError:
                    # The home died with it, having fanned it out to some shards or none:
                    # the broadcast is finished from here, as if the home had been down
                    # before (the caller's success must mean its members get it). The shards
                    # that got the home's copy know its origin and drop this one.
                    return self._deliver_degraded(room, frame, exclude, origin)
        finally:
            self.asks.forget(request)
        # The home is down: reach every member that can be reached, in this sender's order.
        return self._deliver_degraded(room, frame, exclude, "")

    async def _publish_history(
        self, room: RoomName, frame: bytes, exclude: frozenset[ConnectionId], home: int
    ) -> int:
        """A history room's broadcast. Only its home can position it, so it never takes the
        degraded path: while the home is down (or dies before answering) it is sent again,
        under the same origin (a rebuilt home that has it from a copy does not append it
        twice), until ASK_TIMEOUT has passed; then the sender hears RoomUnavailableError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ASK_TIMEOUT
        excluded = sorted(exclude)
        origin = ""
        while True:
            if self._is_home(home):
                await self._until_history_served()
                if self._is_home(home):  # not handed over meanwhile
                    count, counting = self._home_publish(room, frame, excluded, origin)
                    return await _with_remote(count, counting)
                continue
            request, answer = self.asks.open(home)
            origin = origin or f"{self.node}:{self.shard}.{self.generation}.{request}"
            try:
                if self.links.send(home, Publish(room, excluded, frame, request, origin)):
                    wait = max(deadline - loop.time(), HOME_RETRY_INTERVAL)
                    try:
                        return int(await asyncio.wait_for(answer, wait))
                    except TimeoutError:
                        # The home lives but is late: it positions and fans the message out
                        # when it gets to it; the count is what this shard can vouch for.
                        return self._local.count(room, exclude)
                    except RoomUnavailableError:
                        pass  # it died with it: asked again of its successor
            finally:
                self.asks.forget(request)
            if loop.time() >= deadline:
                raise unavailable("the room's home is down; retry")
            await asyncio.sleep(HOME_RETRY_INTERVAL)

    def _deliver_degraded(
        self,
        room: RoomName,
        frame: bytes,
        exclude: frozenset[ConnectionId],
        origin: str,
    ) -> int:
        """A broadcast whose home cannot order it, sent by this shard straight to every live
        instance (and, with Redis, to the other nodes) and delivered to its own members.
        Counted: this shard's deliveries (the other shards' are not known here). ``origin``
        names a broadcast the home may have fanned out already before it died: wherever the
        home's copy arrived, this one is dropped."""
        TALLY.add(_DEGRADED_BROADCASTS)
        excluded = sorted(exclude)
        for link in self.links.instances():
            link.send(Deliver(room, excluded, None, frame, 0, origin))
        self.bridge.publish_room(room, excluded, frame, origin)
        if not self._first_delivery(origin):
            return 0
        return self._deliver_local(room, frame, exclude)

    def _first_delivery(self, origin: str) -> bool:
        """Whether the broadcast named ``origin`` is new here (and remember it); a broadcast
        without an origin is always new."""
        if not origin:
            return True
        seen = self._seen_origins
        if origin in seen:
            return False
        seen[origin] = None
        if len(seen) > SEEN_ORIGINS:
            del seen[next(iter(seen))]
        return True

    async def send_to(self, conn_id: ConnectionId, frame: bytes) -> bool:
        member = self._local.get(conn_id)
        if member is not None:
            return deliver(member, frame)
        owner = self.owner_of(conn_id)
        if owner is None or owner == self.shard:
            remote = self._remote(conn_id)
            if remote is not None:
                return self.bridge.send_direct(remote[0], remote[1], conn_id, frame)
            return False
        try:
            return bool(await self._ref(owner).ask(lambda request: EmitTo(request, conn_id, frame)))
        except RoomUnavailableError:
            return False

    async def disconnect(self, conn_id: ConnectionId, reason: str) -> bool:
        """Close one connection on any shard or node: handed to its shard counts as done."""
        member = self._local.get(conn_id)
        if member is not None:
            await member.conn.disconnect(reason)
            return True
        owner = self.owner_of(conn_id)
        if owner is not None and owner != self.shard:
            return self.links.send(owner, Kick(conn_id, reason))
        remote = self._remote(conn_id)
        if remote is not None:
            return self.bridge.kick(remote[0], remote[1], conn_id, reason)
        return False

    async def publish_all(
        self,
        frame: bytes,
        exclude: frozenset[ConnectionId] = frozenset(),
        namespace: Namespace | None = None,
    ) -> int:
        excluded = sorted(exclude)
        # Every live shard instance (draining ones too: their members listen) delivers and
        # answers with its count; one that does not answer in time counts 0. Other nodes'
        # connections are not counted (Redis cannot say).
        answers: list[asyncio.Future[Any]] = []
        requests: list[int] = []
        try:
            for link in self.links.instances():
                if link.peer is None:
                    continue
                request, answer = self.asks.open(link.peer)
                requests.append(request)
                if link.send(Deliver(None, excluded, namespace, frame, request)):
                    answers.append(answer)
            self.bridge.publish_all(excluded, namespace, frame)
            delivered = self._local.deliver_all(frame, exclude, namespace)
            if answers:
                done, _ = await asyncio.wait(answers, timeout=ASK_TIMEOUT)
                delivered += sum(
                    int(answer.result())
                    for answer in done
                    if answer.exception() is None and isinstance(answer.result(), int)
                )
            return delivered
        finally:
            for request in requests:
                self.asks.forget(request)

    def local_connections(self) -> Iterable[Connection]:
        return self._local.connections()

    # -- the local index -------------------------------------------------------------------------

    def _leave_at_home(self, room: RoomName, conn_id: ConnectionId) -> None:
        home = self.home_of(room)
        if self._is_home(home):
            self._home_leave(room, conn_id)
        else:
            # If the home is down this is lost, and rightly so: the rebuilt room will not
            # hear of this member, since it is no longer in this shard's index. Every live
            # instance of the home hears it: one that is taking over may have it already.
            for link in self.links.instances_of(home):
                link.send(Leave(room, conn_id))

    def _deliver_local(self, room: RoomName, frame: bytes, exclude: Container[str]) -> int:
        """Deliver to this shard's members of ``room``; the fan-out is observed where the
        room has members here."""
        if not self._local.has_room(room):
            return 0
        delivered = self._local.deliver_room(room, frame, exclude)
        TALLY.observe(metrics.broadcast_fanout, delivered)
        return delivered

    def _info(self, conn_id: ConnectionId) -> dict[str, Any]:
        member = self._local.get(conn_id)
        if member is None:
            return {}
        conn = member.conn
        try:
            metadata = orjson.loads(orjson.dumps(conn.metadata))
        except TypeError:
            metadata = {}  # not JSON: remote shards see the identity only
        identity = conn.identity
        return {
            "user_id": identity.user_id,
            "role": identity.role,
            "scopes": identity.scopes,
            "namespace": conn.namespace,
            "metadata": metadata,
        }

    def _proxy(
        self, conn_id: ConnectionId, shard: int, info: dict[str, Any], node: str = ""
    ) -> Connection:
        """A member on another shard or node: its id, identity and metadata; emit and
        disconnect work."""
        now = utcnow()
        conn = Connection(
            id=conn_id,
            raw_socket=None,
            identity=Identity(
                user_id=info.get("user_id"),
                role=info.get("role"),
                scopes=list(info.get("scopes") or []),
                authenticated=info.get("user_id") is not None,
            ),
            session=SessionInfo(started_at=now),
            connected_at=now,
            last_active=now,
            metadata=dict(info.get("metadata") or {}),
            namespace=info.get("namespace") or "/",
        )
        conn.metadata.setdefault("shard", shard)
        bridge = self.bridge
        if node and node != self.node:
            conn.metadata.setdefault("node", node)

            async def emit_remote(event: str, payload: Any) -> None:
                bridge.send_direct(node, shard, conn_id, envelope.encode(event, payload))

            async def disconnect_remote(reason: str) -> None:
                bridge.kick(node, shard, conn_id, reason)

            conn._emit_fn = emit_remote
            conn._disconnect_fn = disconnect_remote
            return conn

        async def emit(event: str, payload: Any) -> None:
            self.links.send(shard, EmitTo(0, conn_id, envelope.encode(event, payload)))

        async def disconnect(reason: str) -> None:
            self.links.send(shard, Kick(conn_id, reason))

        conn._emit_fn = emit
        conn._disconnect_fn = disconnect
        return conn

    # -- room actors homed here ------------------------------------------------------------------

    def _home_join(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        generation: int,
        max_members: int,
        info: dict[str, Any],
    ) -> JoinResult:
        return self._home.join(room, conn_id, (shard, generation, info), max_members)

    def _begin_join(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        generation: int,
        max_members: int,
        info: dict[str, Any],
    ) -> PendingJoin:
        """The part of a join that happens in arrival order (before any later leave): decided
        here, or recorded here and queued at Redis, which decides ``max_members``."""
        if conn_id in self._home.members(room):
            return JoinResult.ALREADY_MEMBER
        future = self.bridge.join(room, conn_id, shard, info, max_members)
        if future is None:  # Redis is down: this node decides alone
            return self._home_join(room, conn_id, shard, generation, max_members, info)
        self._home_join(room, conn_id, shard, generation, 0, info)
        return future

    async def _finish_join(
        self, room: RoomName, conn_id: ConnectionId, max_members: int, pending: PendingJoin
    ) -> JoinResult:
        if isinstance(pending, JoinResult):
            return pending
        result = await pending
        if result is None:  # Redis did not answer: as if it were down
            if max_members and len(self._home.members(room)) > max_members:
                self._home_leave(room, conn_id)
                return JoinResult.FULL
            return JoinResult.JOINED
        if result is JoinResult.FULL:
            self._home_leave(room, conn_id)
        return JoinResult(result)

    async def _listed_members(self, room: RoomName) -> list[ListedMember]:
        """At the home: the room's members on every node (Redis), or on this node."""
        remote = await self.bridge.members(room)
        if remote is not None:
            return [_listed(member, self.node) for member in remote]
        return [(conn_id, shard, info, "") for conn_id, shard, info in self._home_members(room)]

    async def _exists_at_home(self, room: RoomName) -> bool:
        if self._home.exists(room):
            return True
        return bool(await self.bridge.members(room))

    def _home_leave(self, room: RoomName, conn_id: ConnectionId) -> None:
        removed, emptied = self._home.leave(room, conn_id)
        if removed:
            self.bridge.leave(room, conn_id)
        if emptied:
            self.bridge.room_emptied(room)

    def _home_members(self, room: RoomName) -> list[tuple[str, int, dict[str, Any]]]:
        return [
            (conn_id, shard, info)
            for conn_id, (shard, _, info) in self._home.members(room).items()
        ]

    def _home_publish(
        self, room: RoomName, frame: bytes, exclude: list[str], origin: str = ""
    ) -> tuple[int, asyncio.Future[Any] | None]:
        """A broadcast this home orders: the members of this node it was fanned out to, and
        with Redis the future of how many other nodes received it."""
        policy = self._policy(room)
        if policy is not None:
            return self._publish_positioned(room, policy, frame, exclude, origin)
        TALLY.add(_HOME_BROADCASTS)
        remote = self.bridge.publish_room(room, exclude, frame, origin)
        return self._fan_out(room, frame, exclude, origin), remote

    def _fan_out(self, room: RoomName, frame: bytes, exclude: list[str], origin: str = "") -> int:
        """This node's part of a broadcast: one Deliver per shard with members not excluded.
        Returns the members it went to: this shard's deliveries, and the members of every
        shard whose Deliver was handed to its link."""
        members = self._home.members(room)
        if not members:
            return 0
        excluded = frozenset(exclude)
        # Per shard instance: a shard's draining predecessor and its replacement each get
        # the message for their own members.
        per_instance: dict[tuple[int, int], int] = {}
        for conn_id, entry in members.items():
            if conn_id not in excluded:
                instance = (entry[0], entry[1])
                per_instance[instance] = per_instance.get(instance, 0) + 1
        fanned_out = 0
        for (shard, generation), count in per_instance.items():
            if shard == self.shard and generation == self.generation:
                if self._first_delivery(origin):
                    fanned_out += self._deliver_local(room, frame, excluded)
            elif self.links.send_to_instance(
                shard, generation, Deliver(room, exclude, None, frame, 0, origin)
            ):
                fanned_out += count
        return fanned_out

    # -- room history ----------------------------------------------------------------------------

    def _policy(self, room: RoomName) -> HistoryPolicy | None:
        """The room's history policy; None for a room without history (the fast path)."""
        policy = self.history_policy_for(room)
        return policy if policy is not None and policy.enabled else None

    def _touch(self, room: RoomName) -> None:
        self._history_touched[room] = time.monotonic()

    def _publish_positioned(
        self,
        room: RoomName,
        policy: HistoryPolicy,
        frame: bytes,
        exclude: list[str],
        origin: str,
    ) -> tuple[int, asyncio.Future[Any] | None]:
        """A history room's broadcast at its home: appended to the room's ring (the next
        position), then fanned out. A broadcast sent again after its first home died is
        known by its origin (a copy had it): not appended twice, sent again under its
        position (whoever has it already drops it). With Redis, the future of its position
        there: the sender's answer waits for it (REMOTE_COUNT_WAIT at most), so an acked
        broadcast is in Redis even if this node dies at once."""
        TALLY.add(_HOME_BROADCASTS)
        history = self.history.open(room)
        if history is None:  # the policy changed under us: no history after all
            return self._fan_out(room, frame, exclude, origin), None
        known = history.offset_of(origin)
        if known is not None:
            for entry in history:
                if entry.offset == known:
                    fanned = self._fan_out_positioned(room, history.epoch, entry, exclude, False)
                    return fanned, None
        remote = self.bridge.publish_history(
            room, history.room_json, exclude, frame, origin, policy
        )
        if remote is not None:
            # Redis positions it: it comes back to every node's home (this one too) through
            # ``on_room_message`` and is fanned out then, in Redis's order.
            remote.add_done_callback(_retrieved)
            excluded = frozenset(exclude)
            members = sum(1 for conn_id in self._home.members(room) if conn_id not in excluded)
            return members, remote
        if self.bridge.spans_nodes and self._alone_epochs.get(room) != history.epoch:
            # The ring's epoch is Redis's, whose offsets other nodes go on giving: positions
            # given here in it would name other messages. A new epoch of this node's own.
            self.history.discard(room)
            renewed = self.history.open(room)
            if renewed is None:
                return self._fan_out(room, frame, exclude, origin), None
            history = renewed
            self._alone_epochs[room] = history.epoch
            logger.warning(
                "shard %s: Redis is down, positioning %r on this node alone (epoch %s)",
                self.shard,
                room,
                history.epoch,
            )
        entry = history.append(frame, origin, exclude)
        self._touch(room)
        return self._fan_out_positioned(room, history.epoch, entry, exclude), None

    def _fan_out_positioned(
        self,
        room: RoomName,
        epoch: str,
        entry: HistoryEntry,
        exclude: list[str],
        local: bool = True,
    ) -> int:
        """A positioned message to EVERY live instance (each keeps a copy of the room's
        history, members or not), written to the links before this shard's own members get
        it: a home killed meanwhile has lost at most what nobody got. Counted as ``_fan_out``
        counts."""
        message = Deliver(room, exclude, None, entry.frame, 0, entry.origin, entry.offset, epoch)
        excluded = frozenset(exclude)
        per_instance: dict[tuple[int, int], int] = {}
        for conn_id, (shard, generation, _) in self._home.members(room).items():
            if conn_id not in excluded:
                instance = (shard, generation)
                per_instance[instance] = per_instance.get(instance, 0) + 1
        fanned_out = 0
        for link in self.links.instances():
            if link.peer is not None and link.send(message):
                link.flush()
                fanned_out += per_instance.get((link.peer, link.generation), 0)
        if local:
            fanned_out += self._deliver_local(room, entry.frame, excluded)
        return fanned_out

    def _record_copy(
        self,
        room: RoomName,
        epoch: str,
        offset: int,
        frame: bytes,
        origin: str,
        exclude: Iterable[str],
    ) -> bool:
        """Keep a positioned message its home sent (or Redis ordered): whether it is new
        here (a message at or before the latest kept position was delivered already)."""
        history = self.history.get(room)
        if history is not None and history.epoch != epoch:
            self.history.discard(room)  # the home started a new epoch: continuity was lost
        history = self.history.open(room, epoch)
        if history is None:
            return True  # no history here (another policy): deliver as it comes
        self._touch(room)
        return history.record(HistoryEntry(offset, frame, origin, tuple(exclude), time.monotonic()))

    async def _replay_at_home(
        self, room: RoomName, conn_id: ConnectionId, since: Position | None
    ) -> Replay:
        """What ``conn_id`` missed after ``since``, from the room's ring (with Redis, from
        the room's stream where the ring does not reach back). Nothing awaits after the
        ring is read: the caller records the member in the same step."""
        history = self.history.open(room)
        if history is None:  # the policy changed under us: nothing to replay
            return Replay(Coverage.GAP, Position("", 0))
        replay = history.since(since)
        if replay.coverage is Coverage.GAP and since is not None:
            stream = self.bridge.history_since(room, since, history.policy.size)
            if stream is not None:
                try:
                    older = await asyncio.wait_for(stream, REMOTE_COUNT_WAIT)
                except Exception:
                    logger.exception("shard %s: reading %r's history failed", self.shard, room)
                    older = []
                # The ring may have been replaced meanwhile (the room's messages from Redis
                # came in another epoch than the one it was opened in): the current one.
                history = self.history.open(room) or history
                replay = _with_older(history, since, older)
        return _for_member(replay, conn_id)

    def _ring_replay(self, room: RoomName, conn_id: ConnectionId, since: Position | None) -> Replay:
        """``_replay_at_home`` from the ring alone (no other node keeps more)."""
        history = self.history.open(room)
        if history is None:
            return Replay(Coverage.GAP, Position("", 0))
        return _for_member(history.since(since), conn_id)

    def _record_recovered(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        generation: int,
        info: dict[str, Any],
    ) -> None:
        """A recovering member is in the room again: admitted before, so no limit check."""
        self._home.record(room, conn_id, (shard, generation, info))
        self.bridge.announce(room, conn_id, shard, info)

    async def _until_history_served(self) -> None:
        """Wait (up to ASK_TIMEOUT) until this instance's history rooms are rebuilt from
        every instance's copies: positions given before would be given again."""
        if self._history_served.is_set():
            return
        try:
            await asyncio.wait_for(self._history_served.wait(), ASK_TIMEOUT)
        except TimeoutError:
            raise unavailable("room history is being rebuilt; retry") from None

    def _hold(self, work: Callable[[], None]) -> None:
        if len(self._held) >= MAX_HELD:
            TALLY.add(metrics.pipe_dropped)
            return  # its asker's deadline tells it
        self._held.append(work)

    def _own_rooms_moved(self, left: OwnRooms, entered: OwnRooms) -> None:
        if entered is OwnRooms.HANDED_OVER:
            if left is OwnRooms.HOME:
                # Everything we positioned is on the link before this: our successor
                # gives the next offsets only after it.
                self.links.send(self.shard, Positioned(self.shard, self.generation))
            self._serve_history()  # (held asks go on to the successor)
        elif self.links.predecessor_linked:
            # Our predecessor may still position a message or two before it hears our
            # handover: we serve once it says it stopped (bounded: it may hang).
            loop = asyncio.get_running_loop()
            self._awaiting_predecessor = loop.call_later(PREDECESSOR_WAIT, self._serve_history)
        else:
            self._serve_history()

    def _release_plain(self) -> None:
        """The members of this instance's rooms are known (or REBUILD_GRACE is over): the
        broadcasts of rooms without history that waited go on, in arrival order."""
        if self._plain_release is None:
            return
        self._plain_release.cancel()
        self._plain_release = None
        held, self._held_plain = self._held_plain, []
        for work in held:
            work()

    def _on_positioned(self, peer: int, generation: int, message: Positioned) -> None:
        if peer == self.shard and generation < self.generation:
            self._serve_history()

    def _serve_history(self) -> None:
        """This instance's history rooms are whole (or its successor serves them): what
        waited goes on, in arrival order."""
        if self._awaiting_predecessor is not None:
            self._awaiting_predecessor.cancel()
            self._awaiting_predecessor = None
        if self._history_served.is_set():
            return
        self._history_served.set()
        self._release_plain()
        held, self._held = self._held, []
        for work in held:
            work()

    def _history_syncs(self, peer: int) -> list[HistorySync]:
        """What ``peer`` is told of our histories when it (re)appears: our copies of the
        rooms homed there (it is rebuilt from them), and the rings of the rooms we are home
        to (its copies of them)."""
        out: list[HistorySync] = []
        # Our own rings only once they are whole and ours (not while rebuilding them).
        serving_own = self._history_served.is_set() and self._is_home(self.shard)
        for history in self.history:
            homed = self.home_of(history.room)
            if homed == peer or (homed == self.shard and serving_own):
                out.append(_history_sync(history))
        return out

    def _on_history_sync(self, peer: int, generation: int, message: HistorySync) -> None:
        room = message.room
        if self._policy(room) is None:
            return
        frames = split_frames([entry[1] for entry in message.entries], message.frames)
        now = time.monotonic()
        entries = [
            HistoryEntry(offset, frame, origin, tuple(exclude), now - age)
            for (offset, _, origin, exclude, age), frame in zip(
                message.entries, frames, strict=True
            )
        ]
        homed = self.home_of(room)
        if homed == self.shard:
            if self._history_served.is_set():
                return  # positions are given here already: this ring is the truth
        elif homed == peer:
            # The home's own ring replaces our copy (in its epoch, even with nothing in it).
            self.history.discard(room)
            self.history.open(room, message.epoch)
        else:
            return
        history = self.history.open(room)
        if history is not None:
            history.merge(message.epoch, entries, message.last_offset)
            self._touch(room)

    async def _sweep_history(self) -> None:
        while True:
            await asyncio.sleep(HISTORY_SWEEP_INTERVAL)
            self.sweep_history()

    def sweep_history(self) -> None:
        """Drop expired entries; discard the history of a room that ended (no member at its
        home, none here for a copy) once its ttl has passed; set the gauges."""
        now = time.monotonic()
        for history in self.history:
            history.expire()
            room = history.room
            alive = self._local.has_room(room) or (
                self.home_of(room) == self.shard and self._home.exists(room)
            )
            if alive:
                self._history_touched[room] = now
                continue
            keep = history.policy.ttl or HISTORY_KEEP_AFTER_END
            if now - self._history_touched.setdefault(room, now) >= keep:
                self.history.discard(room)
                del self._history_touched[room]
                self._alone_epochs.pop(room, None)
        count, size = self.history.totals
        metrics.room_history_messages.set(count)
        metrics.room_history_bytes.set(size)

    # -- replies that wait for Redis ---------------------------------------------------------------

    def _answer_publish(self, peer: int, generation: int, message: Publish) -> None:
        count, remote = self._home_publish(
            message.room, message.frame, message.exclude, message.origin
        )
        if not message.request:
            return
        if remote is None:
            self.links.send_to_instance(peer, generation, Reply(message.request, count))
        else:
            self._answer_later(
                peer, message.request, _with_remote(count, remote), generation
            )

    def _forward_publish(self, peer: int, generation: int, message: Publish) -> None:
        """Hand a broadcast to our successor, the room's home now. Request ids are per
        asker, so an answered Publish goes on under a request of ours and its count is
        relayed to the asker."""
        if not message.request:
            self.links.send(self.shard, message)
            return
        request, answer = self.asks.open(self.shard)
        forwarded = Publish(message.room, message.exclude, message.frame, request, message.origin)
        if not self.links.send(self.shard, forwarded):
            self.asks.forget(request)
            return  # the asker's own timeout tells it

        async def relayed() -> Any:
            try:
                return await asyncio.wait_for(answer, ASK_TIMEOUT)
            finally:
                self.asks.forget(request)

        self._answer_later(peer, message.request, relayed(), generation)

    async def _join_value(
        self,
        message: JoinRequest,
        pending: PendingJoin,
        position: Position | None,
        shared: asyncio.Future[Position | None] | None,
    ) -> Any:
        if isinstance(pending, JoinResult):
            result = pending
        else:
            result = await self._finish_join(
                message.room, message.conn_id, message.max_members, pending
            )
        found = await _shared_position(position, shared)
        return _join_reply_value(result, None if found is None else str(found))

    def _answer_later(
        self,
        peer: int,
        request: int,
        answer: Coroutine[Any, Any, Any],
        generation: int | None = None,
    ) -> None:
        """Reply to ``peer`` (that very instance, given its ``generation``) once ``answer``
        is known."""

        async def reply() -> None:
            try:
                value = await answer
            except Exception:
                logger.exception("shard %s: answering shard %s failed", self.shard, peer)
                return  # the asker's own timeout tells it
            if generation is None:
                self.links.send(peer, Reply(request, value))
            else:
                self.links.send_to_instance(peer, generation, Reply(request, value))

        self._run_later(reply())

    def _run_later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task this store keeps a reference to until it ends."""
        task = asyncio.get_running_loop().create_task(work)
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    # -- BridgeHandler: what other nodes send ----------------------------------------------------

    def on_room_message(
        self,
        room: RoomName,
        exclude: frozenset[str],
        frame: bytes,
        origin: str = "",
        position: Position | None = None,
    ) -> None:
        if not self.links.home_of_own_rooms:
            # One instance of this shard fans it out: the draining predecessor until the
            # successor takes over, then the successor (to the predecessor's members too).
            return
        if position is None:
            self._fan_out(room, frame, sorted(exclude), origin)
            return
        # A history room's message in Redis's order: kept in this home's ring, then fanned
        # out to every instance of this node as the home's own would be.
        if self._record_copy(room, position.epoch, position.offset, frame, origin, exclude):
            entry = HistoryEntry(position.offset, frame, origin, tuple(exclude), 0.0)
            self._fan_out_positioned(room, position.epoch, entry, sorted(exclude))

    def on_all_message(
        self, exclude: frozenset[str], namespace: Namespace | None, frame: bytes
    ) -> None:
        self._local.deliver_all(frame, exclude, namespace)

    def on_direct(self, conn_id: ConnectionId, frame: bytes) -> None:
        member = self._local.get(conn_id)
        if member is not None:
            deliver(member, frame)

    def on_kick(self, conn_id: ConnectionId, reason: str) -> None:
        """Another shard or node called ``disconnect`` on a proxy of our connection."""
        if self.kick is not None and conn_id in self._local:
            self._run_later(self.kick(conn_id, reason))

    def homed_members(self) -> list[tuple[RoomName, ConnectionId, int, dict[str, Any]]]:
        return [
            (room, conn_id, shard, info)
            for room, members in self._home.items()
            for conn_id, (shard, _, info) in members.items()
        ]

    # -- asks ------------------------------------------------------------------------------------

    def _ref(self, peer: int) -> PeerRef:
        """Shard ``peer`` of this node, to tell or to ask (its live instance)."""
        return self.asks.ref(self.links, peer)

    # -- LinkHandler -----------------------------------------------------------------------------

    def on_message(self, peer: int, generation: int, message: LinkMessage) -> None:
        self.router.dispatch(peer, generation, message)

    def _routes(self) -> dict[type[LinkMessage], Handler]:
        """What this store does with each message a peer shard sends it."""
        return {
            Deliver: self._on_deliver,
            Publish: self._on_publish,
            Reply: self._on_reply,
            JoinRequest: self._on_join,
            Leave: self._on_leave,
            EmitTo: self._on_emit_to,
            MembersRequest: self._on_members,
            ExistsRequest: self._on_exists,
            Rejoin: self._on_rejoin,
            Kick: self._on_kick,
            HistorySync: self._on_history_sync,
            RecoverRequest: self._on_recover,
            RecoverReply: self._on_recover_reply,
            Resume: self._on_resume,
            Positioned: self._on_positioned,
        }

    def _on_deliver(self, peer: int, generation: int, message: Deliver) -> None:
        exclude = frozenset(message.exclude)
        if message.room is None:
            delivered = self._local.deliver_all(message.frame, exclude, message.namespace)
        elif message.offset:
            # A history room's message: every instance keeps a copy; delivered once (by
            # position: one sent again after its home died is known here).
            new = self._record_copy(
                message.room,
                message.epoch,
                message.offset,
                message.frame,
                message.origin,
                message.exclude,
            )
            delivered = self._deliver_local(message.room, message.frame, exclude) if new else 0
        elif self._first_delivery(message.origin):
            delivered = self._deliver_local(message.room, message.frame, exclude)
        else:
            delivered = 0  # the other copy of it came first (its home died meanwhile)
        if message.request:
            self.links.send_to_instance(peer, generation, Reply(message.request, delivered))

    def _on_publish(self, peer: int, generation: int, message: Publish) -> None:
        if self.links.superseded and self.home_of(message.room) == self.shard:
            # Sent before the peer heard of our successor's handover: it is the home.
            self._forward_publish(peer, generation, message)
        elif not self._history_served.is_set() and self._policy(message.room) is not None:
            self._hold(lambda: self._on_publish(peer, generation, message))
        elif self._plain_release is not None and self.home_of(message.room) == self.shard:
            self._held_plain.append(lambda: self._on_publish(peer, generation, message))
        else:
            self._answer_publish(peer, generation, message)

    def _on_reply(self, peer: int, generation: int, message: Reply) -> None:
        self.asks.answered(message.request, message.value)

    def _on_join(self, peer: int, generation: int, message: JoinRequest) -> None:
        position: Position | None = None
        policy = self._policy(message.room)
        if policy is not None:
            if not self._history_served.is_set():
                self._hold(lambda: self._on_join(peer, generation, message))
                return
            history = self.history.open(message.room)
            position = None if history is None else history.position
        joining = self._begin_join(
            message.room, message.conn_id, peer, generation, message.max_members, message.info
        )
        shared = None if policy is None else self.bridge.history_position(message.room, policy)
        if isinstance(joining, JoinResult) and shared is None:
            value = _join_reply_value(joining, None if position is None else str(position))
            self.links.send_to_instance(peer, generation, Reply(message.request, value))
        else:
            answer = self._join_value(message, joining, position, shared)
            self._answer_later(peer, message.request, answer, generation)

    def _on_recover(self, peer: int, generation: int, message: RecoverRequest) -> None:
        if not self._history_served.is_set():
            self._hold(lambda: self._on_recover(peer, generation, message))
            return
        since: Position | None = None
        if message.since is not None:
            with contextlib.suppress(ValueError):  # unreadable: answered as a gap
                since = Position.parse(message.since)
        if self.bridge.spans_nodes:
            self._run_later(self._answer_recover(peer, generation, message, since))
        else:  # answered as it is read: what comes after it on the link follows the replay
            replay = self._ring_replay(message.room, message.conn_id, since)
            self._send_recovered(peer, generation, message, replay)

    async def _answer_recover(
        self, peer: int, generation: int, message: RecoverRequest, since: Position | None
    ) -> None:
        replay = await self._replay_at_home(message.room, message.conn_id, since)
        self._send_recovered(peer, generation, message, replay)

    def _send_recovered(
        self, peer: int, generation: int, message: RecoverRequest, replay: Replay
    ) -> None:
        # Recorded and answered in one step: the next Deliver to that shard follows the reply.
        self._record_recovered(message.room, message.conn_id, peer, generation, message.info)
        sizes, frames = join_frames([entry.frame for entry in replay.entries])
        reply = RecoverReply(
            message.request,
            replay.coverage.value,
            str(replay.position),
            [entry.offset for entry in replay.entries],
            sizes,
            frames,
        )
        self.links.send_to_instance(peer, generation, reply)

    def _on_recover_reply(self, peer: int, generation: int, message: RecoverReply) -> None:
        self.asks.answered(message.request, message)

    def _on_resume(self, peer: int, generation: int, message: Resume) -> None:
        self._answer_later(peer, message.request, self._parked_json(message.conn_id), generation)

    def _on_leave(self, peer: int, generation: int, message: Leave) -> None:
        self._home_leave(message.room, message.conn_id)

    def _on_emit_to(self, peer: int, generation: int, message: EmitTo) -> None:
        member = self._local.get(message.conn_id)
        delivered = member is not None and deliver(member, message.frame)
        if message.request:
            self.links.send_to_instance(peer, generation, Reply(message.request, delivered))

    def _on_members(self, peer: int, generation: int, message: MembersRequest) -> None:
        if not self.bridge.spans_nodes:
            entries = self._home_members(message.room)
            listed = [(conn_id, shard, info, "") for conn_id, shard, info in entries]
            self.links.send_to_instance(peer, generation, Reply(message.request, listed))
        else:
            self._answer_later(
                peer, message.request, self._listed_members(message.room), generation
            )

    def _on_exists(self, peer: int, generation: int, message: ExistsRequest) -> None:
        if not self.bridge.spans_nodes:
            self.links.send_to_instance(
                peer, generation, Reply(message.request, self._home.exists(message.room))
            )
        else:
            self._answer_later(
                peer, message.request, self._exists_at_home(message.room), generation
            )

    def _on_rejoin(self, peer: int, generation: int, message: Rejoin) -> None:
        for room, conn_id, info in message.members:
            if self.home_of(room) == self.shard:
                self._home.record(room, conn_id, (peer, generation, info))
                self.bridge.announce(room, conn_id, peer, info)

    def _on_kick(self, peer: int, generation: int, message: Kick) -> None:
        self.on_kick(message.conn_id, message.reason)

    def on_peer_up(self, peer: int, generation: int) -> None:
        """A shard (re)appeared, or our own successor linked to us: give it our members of
        the rooms it is home to."""
        members = [
            (room, conn_id, self._info(conn_id))
            for room, conn_ids in self._local.rooms()
            if self.home_of(room) == peer
            for conn_id in conn_ids
        ]
        # The histories first: a new home is rebuilt from them before it hands over (which
        # it does once every instance's Rejoin has come).
        for sync in self._history_syncs(peer):
            self.links.send_to_instance(peer, generation, sync)
        # Even when empty: it hands over (becomes the home) once every instance has told it.
        self.links.send_to_instance(peer, generation, Rejoin(members))

    def on_peer_down(self, peer: int, generation: int) -> None:
        """A shard instance exited or died: its members leave the rooms homed here, its asks
        fail. (Its replacement, if any, is another instance: its members stay.)"""
        for room, gone, emptied in self._home.leave_where(
            lambda entry: entry[0] == peer and entry[1] == generation
        ):
            for conn_id in gone:
                self.bridge.leave(room, conn_id)
            if emptied:
                self.bridge.room_emptied(room)
        if self.links.generation_of(peer) not in (None, generation):
            return  # a draining predecessor exited: asks go to its successor, which is up
        self.asks.peer_down(peer)


def _join_reply_value(result: JoinResult, position: str | None) -> Any:
    """A JoinRequest's answer: the result, with the history position for a history room."""
    return result.value if position is None else [result.value, position]


def _join_reply(value: Any) -> tuple[JoinResult, Position | None]:
    if isinstance(value, list):
        result, position = value
        return JoinResult(result), None if position is None else Position.parse(position)
    return JoinResult(value), None


def _for_member(replay: Replay, conn_id: ConnectionId) -> Replay:
    """``replay`` without the messages that excluded ``conn_id``."""
    entries = tuple(entry for entry in replay.entries if conn_id not in entry.exclude)
    return Replay(replay.coverage, replay.position, entries)


def _replay_of(reply: RecoverReply) -> Replay:
    frames = split_frames(reply.sizes, reply.frames)
    entries = tuple(
        HistoryEntry(offset, frame, "", (), 0.0)
        for offset, frame in zip(reply.offsets, frames, strict=True)
    )
    return Replay(Coverage(reply.coverage), Position.parse(reply.position), entries)


def _parked_acks(value: Any) -> ParkedAcks:
    if not isinstance(value, list):
        return None
    return [(ack_id, frame.encode("utf-8")) for ack_id, frame in value]


def _history_sync(history: RoomHistory) -> HistorySync:
    history.expire()
    now = time.monotonic()
    entries = list(history)
    sizes, frames = join_frames([entry.frame for entry in entries])
    return HistorySync(
        history.room,
        history.epoch,
        history.last_offset,
        [
            (entry.offset, size, entry.origin, list(entry.exclude), max(now - entry.at, 0.0))
            for entry, size in zip(entries, sizes, strict=True)
        ],
        frames,
    )


def _with_older(
    history: RoomHistory, since: Position, older: list[HistoryEntry]
) -> Replay:
    """A replay from the messages kept across nodes (after ``since``, oldest first) and
    the ring's later ones; a gap unless together they run unbroken from ``since``."""
    latest = history.position
    older = sorted(older, key=lambda entry: entry.offset)
    if not older or older[0].offset != since.offset + 1:
        return Replay(Coverage.GAP, latest)
    for before, after in itertools.pairwise(older):
        if after.offset != before.offset + 1:
            return Replay(Coverage.GAP, latest)
    newest = older[-1].offset
    if len(history) == 0 and history.last_offset == 0:
        # This home keeps nothing of the room yet (it just started): the stream is all.
        return Replay(Coverage.COVERED, Position(since.epoch, newest), tuple(older))
    tail = history.since(Position(since.epoch, newest))
    if tail.coverage is Coverage.GAP:
        return Replay(Coverage.GAP, latest)
    return Replay(Coverage.COVERED, tail.position, (*older, *tail.entries))


async def _shared_position(
    own: Position | None, shared: asyncio.Future[Position | None] | None
) -> Position | None:
    """A join's position: the one Redis keeps across nodes when it says within
    REMOTE_COUNT_WAIT, else this home's own."""
    if shared is None:
        return own
    try:
        found = await asyncio.wait_for(shared, REMOTE_COUNT_WAIT)
    except Exception:  # Redis did not answer (in time): this node's position
        return own
    return own if found is None else found


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Done callback: a future nobody awaits has its failure read (and so not logged)."""
    if not future.cancelled():
        future.exception()


async def _with_remote(count: int, remote: asyncio.Future[Any] | None) -> int:
    """``count`` plus the other nodes that Redis says received the broadcast (each has at
    least one member there), when it says so within REMOTE_COUNT_WAIT."""
    if remote is None:
        return count
    try:
        others = await asyncio.wait_for(asyncio.shield(remote), REMOTE_COUNT_WAIT)
    except TimeoutError:
        return count
    return count + (others if isinstance(others, int) else 0)


def _listed(member: RemoteMember, own_node: str) -> ListedMember:
    node = "" if member.node == own_node else member.node
    return (member.conn_id, member.shard, member.info, node)
