"""Rooms across nodes: one shard's link to the other nodes, through Redis.

Owns, for one shard of one node (a node is one ``socketspec-cluster``):

- the Redis connections: one for commands, one for pub/sub (redis-py asyncio);
- the node's liveness key, ``socketspec:node:<node>``, set with a TTL of
  ``node_ttl`` seconds and refreshed every third of it by every shard of the
  node, so that it expires at most ``node_ttl`` after the node dies;
- the cluster-wide membership of the rooms homed on this shard: one hash per
  room, ``socketspec:members:<room>``, ``conn_id -> "<node>:<shard>:<info>"``.
  Joins run a Lua script that counts only members of live nodes, drops the
  others and checks ``max_members`` atomically; listing members does the same,
  so a dead node's members stop counting within ``node_ttl`` and leave no ghosts;
- subscriptions: the room's home actor on each node is that node's single
  subscriber for the room, while the node has members in it; every shard also
  listens on its own direct channel (emits and kicks for its connections) and
  on the channel of ``broadcast`` to every connection;
- the shared history of rooms with history: per room a stream,
  ``socketspec:history:<room>`` (offset, frame, origin, exclude per entry; ``MAXLEN ~``
  the room's history size, trimmed by age and expiring ``ttl`` after its last message),
  and the room's position, ``socketspec:history-epoch:<room>`` and
  ``socketspec:history-offset:<room>`` (kept a while longer, so a client that missed
  nothing in a quiet room still recovers). One script positions a broadcast, keeps it
  and publishes it, so Redis orders a history room's messages across nodes;
- the recovery secret the nodes share, ``socketspec:recovery-secret`` (the first
  shard of any node to start sets it);
- publishing and membership writes in order, through one bounded queue;
- the connection's state machine (``BridgeState``, one transition table):
  while Redis is down broadcasts stay on this node and are counted as
  ``socketspec_broadcasts_total{path="undelivered_remote"}``, joins are decided
  by this node alone and leaves are remembered; the bridge reconnects with
  backoff, then re-announces this node's members of the rooms homed here,
  replays the leaves and resubscribes (up again once Redis confirmed the
  subscriptions, so a broadcast sent after that reaches this node).

Room messages from Redis carrying this node's id are dropped (the node delivered
them itself when it published), except history messages: those come back to every
node, this one included, to be fanned out in Redis's order, with their position.
Does not own membership on this node (the cluster store's home actors do) or
framing: the frame built once by the sender crosses Redis as bytes and each
receiving node writes it to its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from socketspec import metrics
from socketspec.backends.base import JoinResult
from socketspec.cluster.addresses import NODE_ID_LENGTH
from socketspec.cluster.redis.codec import (
    RemoteMember,
    decode_message,
    encode_message,
    history_position,
    member_value,
    parse_member,
    room_header,
    run_after,
    stream_entry,
)
from socketspec.cluster.redis.scripts import (
    HISTORY_POSITION_SCRIPT,
    HISTORY_PUBLISH_SCRIPT,
    HISTORY_SINCE_SCRIPT,
    JOIN_SCRIPT,
    MEMBERS_SCRIPT,
)
from socketspec.history import HistoryEntry, HistoryPolicy, Position, new_epoch
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

logger = logging.getLogger("socketspec.redis")

PREFIX = "socketspec:"
QUEUE_LIMIT = 10_000  # ordered operations waiting for Redis; past it, broadcasts are dropped
PENDING_LEAVES_LIMIT = 100_000
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
CONNECT_TIMEOUT = 2.0
# How long a subscription may take to be confirmed before the writes queued after it go
# on anyway (a history room's messages come back through it: it must be live first).
SUBSCRIBE_WAIT = 2.0
SECRET_KEY = f"{PREFIX}recovery-secret"
# How long a history room's position outlives its last message, at least (its entries
# expire with the room's ttl): a client that missed nothing in a quiet room recovers.
POSITION_KEEP = 3600
# The lifetime of a history without an age limit (ttl 0) after its last message.
UNAGED_KEEP = 86_400

_UNDELIVERED_REMOTE = metrics.broadcasts.labels(path="undelivered_remote")
_PUBLISHED = {kind: metrics.redis_published.labels(kind=kind) for kind in ("room", "all", "direct")}
_RECEIVED = {kind: metrics.redis_received.labels(kind=kind) for kind in ("room", "all", "direct")}

class BridgeState(Enum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    CLOSED = "closed"


TRANSITIONS: dict[BridgeState, frozenset[BridgeState]] = {
    BridgeState.CONNECTING: frozenset({BridgeState.UP, BridgeState.DOWN, BridgeState.CLOSED}),
    BridgeState.UP: frozenset({BridgeState.DOWN, BridgeState.CLOSED}),
    BridgeState.DOWN: frozenset({BridgeState.UP, BridgeState.CLOSED}),
    BridgeState.CLOSED: frozenset(),
}


class BridgeHandler(Protocol):
    """What the bridge hands to the cluster store of its shard."""

    def on_room_message(
        self,
        room: RoomName,
        exclude: frozenset[str],
        frame: bytes,
        origin: str = "",
        position: Position | None = None,
    ) -> None:
        """A broadcast to ``room`` for this node's members; ``position`` for a history
        room's (its frame is positioned already), which come in Redis's order, this
        node's own included."""
        ...

    def on_all_message(
        self, exclude: frozenset[str], namespace: Namespace | None, frame: bytes
    ) -> None: ...

    def on_direct(self, conn_id: ConnectionId, frame: bytes) -> None: ...

    def on_kick(self, conn_id: ConnectionId, reason: str) -> None: ...

    def homed_members(self) -> list[tuple[RoomName, ConnectionId, int, dict[str, Any]]]:
        """This node's members of the rooms homed on this shard: room, conn, shard, info."""
        ...

    def history_policy_for(self, room: RoomName) -> HistoryPolicy | None:
        """The room's history policy (None: no history); a stream read back is bounded by
        it as the home's own history is."""
        ...


Operation = Callable[[aioredis.Redis], Awaitable[Any]]
# A queued operation, the future of its result (or None), what to count if it is lost, and
# the result its future gets then.
Queued = tuple[Operation, "asyncio.Future[Any] | None", "Callable[[], None] | None", Any]


class RedisBridge:
    spans_nodes = True  # other nodes are reached: answers that list members wait for Redis

    def __init__(
        self, url: str, node: str, shard: int, node_ttl: float, handler: BridgeHandler
    ) -> None:
        if len(node) != NODE_ID_LENGTH:
            raise ValueError(f"a node id is {NODE_ID_LENGTH} hex characters, got {node!r}")
        self.url = url
        self.node = node
        self.shard = shard
        self.node_ttl = node_ttl
        self.handler = handler
        self.state = BridgeState.CONNECTING
        # Labelled by shard: only shards have the series (the supervisor would report 0).
        self._up_gauge = metrics.redis_up.labels(shard=str(shard))
        self.up = asyncio.Event()  # set while the state is UP
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._rooms: set[RoomName] = set()  # rooms this shard's home actor listens to
        self._subscribed: set[RoomName] = set()
        self._queue: asyncio.Queue[Queued] = asyncio.Queue(QUEUE_LIMIT)
        # Subscriptions sent and not confirmed yet, by channel.
        self._confirming: dict[bytes, asyncio.Future[None]] = {}
        self._pending_leaves: dict[tuple[RoomName, ConnectionId], None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._failed = asyncio.Event()
        self._scripts: dict[str, Any] = {}

    # -- naming ----------------------------------------------------------------------------------

    @staticmethod
    def members_key(room: RoomName) -> str:
        return f"{PREFIX}members:{room}"

    @staticmethod
    def room_channel(room: RoomName) -> str:
        return f"{PREFIX}room:{room}"

    @staticmethod
    def direct_channel(node: str, shard: int) -> str:
        return f"{PREFIX}shard:{node}:{shard}"

    ALL_CHANNEL = f"{PREFIX}all"

    @staticmethod
    def history_keys(room: RoomName) -> list[str]:
        """A history room's epoch key, offset key and stream."""
        return [
            f"{PREFIX}history-epoch:{room}",
            f"{PREFIX}history-offset:{room}",
            f"{PREFIX}history:{room}",
        ]

    @property
    def node_key(self) -> str:
        return f"{PREFIX}node:{self.node}"

    # -- state -----------------------------------------------------------------------------------

    def _move(self, state: BridgeState) -> None:
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"Redis bridge cannot move from {self.state.value} to {state.value}")
        self.state = state
        if state is BridgeState.UP:
            self.up.set()
            self._up_gauge.set(1)
        else:
            self.up.clear()
            self._up_gauge.set(0)

    def _closed(self) -> bool:
        # A method, not an inline comparison: close() changes the state while this task waits.
        return self.state is BridgeState.CLOSED

    @property
    def is_up(self) -> bool:
        return self.state is BridgeState.UP

    def _error(self, op: str, exc: BaseException) -> None:
        metrics.redis_errors.labels(op=op).inc()
        if self.is_up:
            logger.warning(
                "Redis %s failed (%s): serving this node alone until it returns", op, exc
            )
            self._failed.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Connect in the background; wait up to ``wait`` seconds for the first connection."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._connection_loop()),
            loop.create_task(self._writer()),
            loop.create_task(self._heartbeat()),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.up.wait(), wait)

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Let queued writes (leaves of closed connections) reach Redis, then disconnect."""
        if self.is_up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), flush_timeout)
        if self.state is not BridgeState.CLOSED:
            self._move(BridgeState.CLOSED)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._teardown()

    async def _connection_loop(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._closed():
            try:
                await self._connect()
                self._move(BridgeState.UP)
                backoff = BACKOFF_FIRST
                logger.info(
                    "Redis at %s: node %s shard %s connected", self.url, self.node, self.shard
                )
                await self._read()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                metrics.redis_errors.labels(op="connection").inc()
                if self.is_up:
                    logger.warning("Redis connection lost (%s); reconnecting", exc)
                else:
                    logger.debug("Redis not reachable (%s); retrying in %.1fs", exc, backoff)
            finally:
                await self._teardown()
            if self._closed():
                return
            if self.state is not BridgeState.DOWN:
                self._move(BridgeState.DOWN)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        self._failed.clear()
        client = aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._client = client
        await client.ping()
        self._scripts = {
            "join": client.register_script(JOIN_SCRIPT),
            "members": client.register_script(MEMBERS_SCRIPT),
            "history_publish": client.register_script(HISTORY_PUBLISH_SCRIPT),
            "history_since": client.register_script(HISTORY_SINCE_SCRIPT),
            "history_position": client.register_script(HISTORY_POSITION_SCRIPT),
        }
        await self._announce(client)
        pubsub = client.pubsub()
        self._pubsub = pubsub
        channels = [self.direct_channel(self.node, self.shard), self.ALL_CHANNEL]
        channels += [self.room_channel(room) for room in self._rooms]
        await pubsub.subscribe(*channels)
        self._subscribed = set(self._rooms)
        await self._until_confirmed(pubsub, len(channels))

    async def _until_confirmed(self, pubsub: Any, count: int) -> None:
        """Before the bridge is up: wait (at most SUBSCRIBE_WAIT) until Redis confirmed the
        ``count`` subscriptions just sent, so that the broadcasts published once this node
        is seen up again reach it; a message that comes meanwhile is dispatched."""
        deadline = time.monotonic() + SUBSCRIBE_WAIT
        while count > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=remaining)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                count -= 1
            elif message.get("type") == "message":
                self._dispatch(message["channel"], message["data"])

    async def _announce(self, client: aioredis.Redis) -> None:
        """This node is alive, and these are its members of the rooms homed here."""
        pipe = client.pipeline(transaction=False)
        pipe.set(self.node_key, b"1", ex=max(1, round(self.node_ttl)))
        for room, conn_id, shard, info in self.handler.homed_members():
            pipe.hset(self.members_key(room), conn_id, member_value(self.node, shard, info))
        leaves = list(self._pending_leaves)
        for room, conn_id in leaves:
            pipe.hdel(self.members_key(room), conn_id)
        await pipe.execute()
        for leave in leaves:
            self._pending_leaves.pop(leave, None)

    async def _teardown(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        confirming, self._confirming = self._confirming, {}
        for waiting in confirming.values():
            if not waiting.done():
                waiting.set_result(None)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _read(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        failed = asyncio.get_running_loop().create_task(self._failed.wait())
        reading: asyncio.Future[Any] | None = None
        try:
            while True:
                reading = asyncio.ensure_future(
                    pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
                )
                done, _ = await asyncio.wait({reading, failed}, return_when=asyncio.FIRST_COMPLETED)
                if failed in done:
                    reading.cancel()
                    with contextlib.suppress(BaseException):
                        await reading
                    raise RedisError("an operation failed")
                message = reading.result()
                # Take every message already read in this turn, so that a burst of
                # broadcasts reaches each member's queue in one turn: one write per member.
                while message is not None:
                    kind = message.get("type")
                    if kind == "message":
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "subscribe":
                        self._confirmed(message["channel"])
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=False, timeout=0.0
                    )
        finally:
            failed.cancel()
            if reading is not None and not reading.done():
                # Closing (this task is cancelled): the pending read must not outlive the
                # bridge, nor its connection's end be logged as an unretrieved error.
                reading.cancel()

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        decoded = decode_message(data)
        if decoded is None:
            logger.warning("unreadable message on %r", channel)
            return
        header, frame = decoded
        kind = header.get("k")
        if kind == "room":
            try:
                position = history_position(header)
            except ValueError:
                logger.warning("a history message on %r without a readable position", channel)
                return
            own = header.get("n") == self.node
            if own and position is None:
                return  # published by this node, which delivered it already
            sent = header.get("t")
            if not own:  # the metrics are of what other nodes send
                TALLY.add(_RECEIVED["room"])
                if isinstance(sent, float):
                    TALLY.observe(metrics.redis_lag, max(0.0, time.time() - sent))
            room, exclude, origin = header["r"], frozenset(header.get("x") or ()), header.get("o")
            if position is None:
                self.handler.on_room_message(room, exclude, frame, str(origin or ""))
            else:
                self.handler.on_room_message(
                    room, exclude, frame, str(origin or ""), position=position
                )
        elif kind == "all":
            if header.get("n") == self.node:
                return
            TALLY.add(_RECEIVED["all"])
            self.handler.on_all_message(frozenset(header.get("x") or ()), header.get("ns"), frame)
        elif kind == "emit":
            TALLY.add(_RECEIVED["direct"])
            self.handler.on_direct(header["c"], frame)
        elif kind == "kick":
            TALLY.add(_RECEIVED["direct"])
            self.handler.on_kick(header["c"], str(header.get("reason") or "server_close"))

    async def _heartbeat(self) -> None:
        interval = max(0.2, self.node_ttl / 3)
        ttl = max(1, round(self.node_ttl))
        while True:
            await asyncio.sleep(interval)
            client = self._client
            if self.is_up and client is not None:
                try:
                    await client.set(self.node_key, b"1", ex=ttl)
                except (RedisError, OSError) as exc:
                    self._error("heartbeat", exc)

    async def _writer(self) -> None:
        """Runs queued operations one at a time, so that they reach Redis in order."""
        queue = self._queue
        while True:
            operation, future, on_lost, lost = await queue.get()
            try:
                client = self._client
                if not self.is_up or client is None:
                    raise RedisError("not connected")
                result = await operation(client)
            except asyncio.CancelledError:
                if future is not None and not future.done():
                    future.cancel()
                raise
            except (RedisError, OSError) as exc:
                self._error("write", exc)
                if on_lost is not None:
                    on_lost()
                if future is not None and not future.done():
                    future.set_result(lost)
            except Exception as exc:  # a bug, not Redis: say so, keep the queue going
                logger.exception("Redis operation failed")
                if future is not None and not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(result)
            finally:
                queue.task_done()

    def _enqueue(
        self,
        operation: Operation,
        want_result: bool,
        on_lost: Callable[[], None] | None = None,
        lost: Any = None,
    ) -> asyncio.Future[Any] | None:
        """Queue ``operation``; its future (when ``want_result``) gets its result, or
        ``lost`` when Redis did not answer or the queue was full."""
        future: asyncio.Future[Any] | None = None
        if want_result:
            future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((operation, future, on_lost, lost))
        except asyncio.QueueFull:
            metrics.redis_errors.labels(op="overflow").inc()
            if future is not None:
                future.set_result(lost)
            return future
        return future

    # -- membership ------------------------------------------------------------------------------

    def join(
        self,
        room: RoomName,
        conn_id: ConnectionId,
        shard: int,
        info: dict[str, Any],
        max_members: int,
    ) -> asyncio.Future[Any] | None:
        """Queue a join; the future gives a ``JoinResult``, or None when Redis did not answer
        (the caller decides on this node alone). None at once while Redis is down."""
        self._rooms.add(room)
        if not self.is_up:
            return None
        value = member_value(self.node, shard, info)
        node_prefix = f"{PREFIX}node:"

        async def run(client: aioredis.Redis) -> JoinResult:
            answer = await self._scripts["join"](
                keys=[self.members_key(room)], args=[conn_id, value, max_members, node_prefix]
            )
            await self._listen_to(room)
            text = answer.decode() if isinstance(answer, bytes) else str(answer)
            return {
                "joined": JoinResult.JOINED,
                "already": JoinResult.ALREADY_MEMBER,
                "full": JoinResult.FULL,
            }[text]

        return self._enqueue(run, want_result=True)

    def announce(
        self, room: RoomName, conn_id: ConnectionId, shard: int, info: dict[str, Any]
    ) -> None:
        """A member this node already admitted (a restarted shard's rejoin): record it."""
        self._rooms.add(room)
        if not self.is_up:
            return  # re-announced on reconnect
        value = member_value(self.node, shard, info)

        async def run(client: aioredis.Redis) -> None:
            await client.hset(self.members_key(room), conn_id, value)
            await self._listen_to(room)

        self._enqueue(run, want_result=False)

    async def settled(self, timeout: float = 1.0) -> None:
        """Every operation queued so far (subscriptions included) is done, or ``timeout``
        has passed, or Redis is down."""
        if not self.is_up:
            return

        async def nothing(client: aioredis.Redis) -> None:
            return None

        done = self._enqueue(nothing, want_result=True)
        if done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), timeout)

    async def _listen_to(self, room: RoomName) -> None:
        """Subscribe to ``room``'s channel if this node still has members there, and wait
        (at most SUBSCRIBE_WAIT) until Redis confirms it: the writes queued after this
        one (a history room's first broadcast, a recovery's read of the stream) then
        find the subscription live, so nothing published after them is missed here."""
        if room in self._rooms and room not in self._subscribed and self._pubsub is not None:
            channel = self.room_channel(room)
            confirmed = asyncio.get_running_loop().create_future()
            self._confirming[channel.encode()] = confirmed
            await self._pubsub.subscribe(channel)
            self._subscribed.add(room)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(confirmed, SUBSCRIBE_WAIT)

    def _confirmed(self, channel: bytes | str) -> None:
        key = channel.encode() if isinstance(channel, str) else channel
        waiting = self._confirming.pop(key, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def leave(self, room: RoomName, conn_id: ConnectionId) -> None:
        if not self.is_up:
            if len(self._pending_leaves) < PENDING_LEAVES_LIMIT:
                self._pending_leaves[(room, conn_id)] = None
            return

        async def run(client: aioredis.Redis) -> None:
            await client.hdel(self.members_key(room), conn_id)

        self._enqueue(run, want_result=False)

    def room_emptied(self, room: RoomName) -> None:
        """This node has no members left in ``room``: stop listening to it."""
        self._rooms.discard(room)
        if not self.is_up:
            return

        async def run(client: aioredis.Redis) -> None:
            if room not in self._rooms and room in self._subscribed and self._pubsub is not None:
                self._subscribed.discard(room)
                await self._pubsub.unsubscribe(self.room_channel(room))

        self._enqueue(run, want_result=False)

    async def members(self, room: RoomName) -> list[RemoteMember] | None:
        """Live members of ``room`` on every node; None while Redis cannot say. Read through
        the ordered queue, after every membership write queued before it."""
        if not self.is_up:
            return None

        async def run(client: aioredis.Redis) -> Any:
            return await self._scripts["members"](
                keys=[self.members_key(room)], args=[f"{PREFIX}node:"]
            )

        pending = self._enqueue(run, want_result=True)
        assert pending is not None
        flat = await pending
        if flat is None:
            return None
        out: list[RemoteMember] = []
        for index in range(0, len(flat) - 1, 2):
            member = parse_member(flat[index], flat[index + 1])
            if member is not None:
                out.append(member)
        return out

    # -- messages --------------------------------------------------------------------------------

    def _publish(
        self,
        kind: str,
        channel: str,
        data: bytes,
        on_lost: Callable[[], None] | None = None,
        room: RoomName | None = None,
    ) -> asyncio.Future[Any] | None:
        """Queue one PUBLISH, in order with the membership writes. Returns the future of how
        many subscribers besides this shard's own subscription to ``room`` received it (None
        when Redis lost it), or None at once when it was not queued (Redis is down or the
        queue is full)."""
        if not self.is_up:
            return None

        async def run(client: aioredis.Redis) -> int:
            receivers = int(await client.publish(channel, data))
            TALLY.add(_PUBLISHED[kind])
            own = 1 if room is not None and room in self._subscribed else 0
            return max(0, receivers - own)

        if self._queue.full():
            metrics.redis_errors.labels(op="overflow").inc()
            return None
        return self._enqueue(run, want_result=True, on_lost=on_lost)

    def publish_room(
        self, room: RoomName, exclude: list[str], frame: bytes, origin: str = ""
    ) -> asyncio.Future[Any] | None:
        """A broadcast this node's home actor ordered: to every other node with members.

        Returns the future of the number of other nodes that received it (each has at least
        one member in the room: its home actor subscribes while it has members; None when
        Redis lost it), or None when it stayed on this node. ``origin`` names the broadcast
        (the store's ``Publish.origin``): a node that gets it twice delivers it once."""
        data = encode_message(room_header(self.node, room, exclude, origin, time.time()), frame)
        sent = self._publish("room", self.room_channel(room), data, _count_undelivered, room)
        if sent is None:
            _count_undelivered()
        return sent

    def publish_all(self, exclude: list[str], namespace: Namespace | None, frame: bytes) -> None:
        header = {"k": "all", "n": self.node, "x": exclude, "ns": namespace}
        data = encode_message(header, frame)
        if self._publish("all", self.ALL_CHANNEL, data, _count_undelivered) is None:
            _count_undelivered()

    def send_direct(self, node: str, shard: int, conn_id: ConnectionId, frame: bytes) -> bool:
        header = {"k": "emit", "c": conn_id}
        channel = self.direct_channel(node, shard)
        return self._publish("direct", channel, encode_message(header, frame)) is not None

    def kick(self, node: str, shard: int, conn_id: ConnectionId, reason: str) -> bool:
        header = {"k": "kick", "c": conn_id, "reason": reason}
        channel = self.direct_channel(node, shard)
        return self._publish("direct", channel, encode_message(header, b"")) is not None

    # -- history -----------------------------------------------------------------------------------

    def publish_history(
        self,
        room: RoomName,
        room_json: bytes,
        exclude: list[str],
        frame: bytes,
        origin: str,
        policy: HistoryPolicy,
    ) -> asyncio.Future[Position | None] | None:
        """A broadcast to a history room this node's home actor orders: positioned in the
        room's stream and published to every node that listens to the room, this one
        included (``on_room_message`` with its position, in Redis's order), in one script.
        The future gives its position, or None when Redis lost the call (whether the
        script ran is then unknown). None at once while Redis is down or the queue is full:
        the caller positions it on this node."""
        if not self.is_up or self._queue.full():
            if self.is_up:
                metrics.redis_errors.labels(op="overflow").inc()
            return None
        keys = [*self.history_keys(room), self.room_channel(room)]
        header = orjson.dumps(room_header(self.node, room, exclude, origin, time.time()))
        stream_ttl, position_ttl = _lifetimes(policy)
        age_ms = round(policy.ttl * 1000)

        async def run(client: aioredis.Redis) -> Position:
            epoch, offset = await self._scripts["history_publish"](
                keys=keys,
                args=[
                    new_epoch(),
                    room_json,
                    frame,
                    header,
                    policy.size,
                    stream_ttl,
                    position_ttl,
                    age_ms,
                    origin,
                    orjson.dumps(exclude),
                ],
            )
            TALLY.add(_PUBLISHED["room"])
            return _position(epoch, offset)

        return self._enqueue(run, want_result=True, on_lost=_count_undelivered)

    def history_position(
        self, room: RoomName, policy: HistoryPolicy
    ) -> asyncio.Future[Position | None] | None:
        """The room's shared position now, its epoch created if it had none: what a member
        joining now recovers from, in the epoch the room's next messages get (a home that
        just started, or a room not sent to yet, knows no better). Queued in order with
        the join. The future gives None when Redis did not answer; None at once while it
        is down."""
        if not self.is_up or self._queue.full():
            return None
        keys = self.history_keys(room)
        _, position_ttl = _lifetimes(policy)

        async def run(client: aioredis.Redis) -> Position:
            epoch, offset = await self._scripts["history_position"](
                keys=keys, args=[new_epoch(), position_ttl]
            )
            return _position(epoch, offset)

        return self._enqueue(run, want_result=True)

    def history_since(
        self, room: RoomName, since: Position, limit: int
    ) -> asyncio.Future[list[HistoryEntry]] | None:
        """The room's stream after ``since``: a run from ``since.offset + 1`` in its epoch,
        at most ``limit`` entries, oldest first; empty when the stream holds none (nothing
        newer, another epoch, trimmed or expired past it, or Redis did not answer).

        This node listens to the room from then on (the caller is a home about to record
        a recovering member), and the stream is read once that subscription is confirmed:
        every message after the ones read comes through ``on_room_message``, none falls
        between the two. Read through the ordered queue, after every write queued before
        it. None while Redis is down."""
        if not self.is_up:
            return None
        policy = self._policy_for(room)
        keys = self.history_keys(room)
        self._rooms.add(room)

        async def run(client: aioredis.Redis) -> list[HistoryEntry]:
            await self._listen_to(room)
            found = await self._scripts["history_since"](
                keys=keys, args=[since.epoch, since.offset]
            )
            wall, monotonic = time.time(), time.monotonic()
            entries = [
                entry
                for entry_id, fields in found
                if (entry := stream_entry(entry_id, fields, wall, monotonic)) is not None
            ]
            return run_after(entries, since, limit, policy, monotonic)

        return self._enqueue(run, want_result=True, lost=[])

    def _policy_for(self, room: RoomName) -> HistoryPolicy:
        """The policy the room's stream is kept by; for a room this node does not know to
        have history, only the stream's own bounds (its MAXLEN and expiry) apply."""
        policy = self.handler.history_policy_for(room)
        return policy if policy is not None and policy.enabled else _STREAM_BOUNDS_ONLY

    async def shared_secret(self, candidate: str) -> str:
        """The recovery secret of every node on this Redis: ``candidate`` if no node set one
        before (``SET NX``), else theirs. ``candidate`` itself while Redis is down (tokens
        then stay valid on this node only; a warning says so)."""

        async def run(client: aioredis.Redis) -> Any:
            await client.set(SECRET_KEY, candidate, nx=True)
            return await client.get(SECRET_KEY)

        pending = self._enqueue(run, want_result=True) if self.is_up else None
        agreed = await pending if pending is not None else None
        if agreed is None:
            logger.warning(
                "Redis did not give the shared recovery secret: this node's recovery "
                "tokens are not accepted by the other nodes"
            )
            return candidate
        return agreed.decode() if isinstance(agreed, bytes) else str(agreed)


def _lifetimes(policy: HistoryPolicy) -> tuple[int, int]:
    """How long a history room's stream and its position keys outlive its last message."""
    stream_ttl = math.ceil(policy.ttl) if policy.ttl else UNAGED_KEEP
    return stream_ttl, max(stream_ttl, POSITION_KEEP)


def _position(epoch: bytes | str, offset: Any) -> Position:
    return Position(epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(offset))


# Reading a stream whose room's policy is not known here: whatever the stream kept.
_STREAM_BOUNDS_ONLY = HistoryPolicy(size=2**31, ttl=0, max_bytes=2**62)


def _count_undelivered() -> None:
    """A broadcast that stayed on this node: Redis was down, or lost it on the way."""
    TALLY.add(_UNDELIVERED_REMOTE)
