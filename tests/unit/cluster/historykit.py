"""Two cluster room stores of one node linked over real Unix sockets in one event loop, the
rooms named ``h-*`` keeping history: the store's history and recovery calls and the link
messages behind them, without an app or a server process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import orjson

from socketspec.cluster.store import ClusterRoomStore, home_of
from socketspec.connection import Connection, Identity, SessionInfo, utcnow
from socketspec.history import HistoryPolicy, Position
from socketspec.types import RoomName

SHARDS = 2
POLICY = HistoryPolicy(size=50, ttl=60.0)


def policy_for(room: RoomName) -> HistoryPolicy | None:
    return POLICY if room.startswith("h-") else None


def room_homed_on(shard: int, prefix: str = "h-") -> str:
    return next(
        f"{prefix}{i}" for i in range(1000) if home_of(f"{prefix}{i}", SHARDS) == shard
    )


def said(n: int) -> bytes:
    return orjson.dumps({"event": "said", "payload": {"n": n}})


def positions(frames: list[bytes]) -> list[str]:
    return [orjson.loads(frame)["pos"] for frame in frames]


def offsets(frames: list[bytes]) -> list[int]:
    return [Position.parse(pos).offset for pos in positions(frames)]


def payloads(frames: list[bytes]) -> list[int]:
    return [orjson.loads(frame)["payload"]["n"] for frame in frames]


class Sink:
    """A local member recording the frames delivered to it."""

    def __init__(self, conn_id: str) -> None:
        now = utcnow()
        self.conn = Connection(
            id=conn_id,
            raw_socket=None,
            identity=Identity(),
            session=SessionInfo(started_at=now),
            connected_at=now,
            last_active=now,
        )
        self.frames: list[bytes] = []

    @property
    def id(self) -> str:
        return self.conn.id

    def deliver(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


async def start_store(run_dir: Path, shard: int, generation: int = 1) -> ClusterRoomStore:
    store = ClusterRoomStore(shard, SHARDS, generation, run_dir)
    store.use_history(policy_for)
    await store.start()
    return store


async def serving(*stores: ClusterRoomStore) -> None:
    """Until every store is linked and serves its history rooms."""
    async with asyncio.timeout(5):
        for store in stores:
            await store._history_served.wait()
            await store.links.all_linked.wait()


async def member(store: ClusterRoomStore) -> Sink:
    sink = Sink(store.new_connection_id())
    await store.attach(sink)
    return sink


def crash(store: ClusterRoomStore) -> None:
    """As a kill -9 leaves it: every link cut without a goodbye, its socket file behind."""
    if store._sweeper is not None:
        store._sweeper.cancel()
    links = store.links
    for task in list(links._connectors):
        task.cancel()
    if links._server is not None:
        links._server.close()
    for link in list(links._links | links.unnamed):
        if link.transport is not None:
            link.transport.abort()


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Until ``condition()`` holds (what was sent has crossed the links)."""
    async with asyncio.timeout(timeout):
        # Polled: what it waits for crosses sockets, with no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def close_all(*stores: ClusterRoomStore) -> None:
    for store in stores:
        with contextlib.suppress(Exception):
            await store.close()
