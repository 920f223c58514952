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
- publishing and membership writes in order, through one bounded queue;
- the connection's state machine (``BridgeState``, one transition table):
  while Redis is down broadcasts stay on this node and are counted as
  ``socketspec_broadcasts_total{path="undelivered_remote"}``, joins are decided
  by this node alone and leaves are remembered; the bridge reconnects with
  backoff, then re-announces this node's members of the rooms homed here,
  replays the leaves and resubscribes.

Messages from Redis carrying this node's id are dropped (the node delivered
them itself when it published). Does not own membership on this node (the
cluster store's home actors do) or framing: the frame built once by the sender
crosses Redis as bytes and each receiving node writes it to its members.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, Protocol

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
    member_value,
    parse_member,
)
from socketspec.cluster.redis.scripts import JOIN_SCRIPT, MEMBERS_SCRIPT
from socketspec.metrics import TALLY
from socketspec.types import ConnectionId, Namespace, RoomName

logger = logging.getLogger("socketspec.redis")

PREFIX = "socketspec:"
QUEUE_LIMIT = 10_000  # ordered operations waiting for Redis; past it, broadcasts are dropped
PENDING_LEAVES_LIMIT = 100_000
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
CONNECT_TIMEOUT = 2.0

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
        self, room: RoomName, exclude: frozenset[str], frame: bytes, origin: str = ""
    ) -> None: ...

    def on_all_message(
        self, exclude: frozenset[str], namespace: Namespace | None, frame: bytes
    ) -> None: ...

    def on_direct(self, conn_id: ConnectionId, frame: bytes) -> None: ...

    def on_kick(self, conn_id: ConnectionId, reason: str) -> None: ...

    def homed_members(self) -> list[tuple[RoomName, ConnectionId, int, dict[str, Any]]]:
        """This node's members of the rooms homed on this shard: room, conn, shard, info."""
        ...


Operation = Callable[[aioredis.Redis], Awaitable[Any]]


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
        # Operation, the future of its result (or None), and what to count if it is lost.
        self._queue: asyncio.Queue[
            tuple[Operation, asyncio.Future[Any] | None, Callable[[], None] | None]
        ] = asyncio.Queue(QUEUE_LIMIT)
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
        }
        await self._announce(client)
        pubsub = client.pubsub()
        self._pubsub = pubsub
        channels = [self.direct_channel(self.node, self.shard), self.ALL_CHANNEL]
        channels += [self.room_channel(room) for room in self._rooms]
        await pubsub.subscribe(*channels)
        self._subscribed = set(self._rooms)

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
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
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
                    if message.get("type") == "message":
                        self._dispatch(message["channel"], message["data"])
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0)
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
            if header.get("n") == self.node:
                return  # published by this node, which delivered it already
            TALLY.add(_RECEIVED["room"])
            sent = header.get("t")
            if isinstance(sent, float):
                TALLY.observe(metrics.redis_lag, max(0.0, time.time() - sent))
            self.handler.on_room_message(
                header["r"], frozenset(header.get("x") or ()), frame, str(header.get("o") or "")
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
            operation, future, on_lost = await queue.get()
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
                    future.set_result(None)
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
    ) -> asyncio.Future[Any] | None:
        future: asyncio.Future[Any] | None = None
        if want_result:
            future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((operation, future, on_lost))
        except asyncio.QueueFull:
            metrics.redis_errors.labels(op="overflow").inc()
            if future is not None:
                future.set_result(None)
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
        """Subscribe to ``room``'s channel if this node still has members there."""
        if room in self._rooms and room not in self._subscribed and self._pubsub is not None:
            await self._pubsub.subscribe(self.room_channel(room))
            self._subscribed.add(room)

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
        header = {"k": "room", "n": self.node, "t": time.time(), "r": room, "x": exclude}
        if origin:
            header["o"] = origin
        data = encode_message(header, frame)
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


def _count_undelivered() -> None:
    """A broadcast that stayed on this node: Redis was down, or lost it on the way."""
    TALLY.add(_UNDELIVERED_REMOTE)
