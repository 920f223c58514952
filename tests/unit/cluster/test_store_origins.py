"""A broadcast named by its origin is delivered at most once per shard instance: the home's
copy and the sender's own copy (sent when the home died before answering) may both arrive.
The store is not started: these are the messages it handles, not its links."""

from __future__ import annotations

from pathlib import Path

from socketspec.cluster.codec import Deliver
from socketspec.cluster.store import SEEN_ORIGINS, ClusterRoomStore, home_of
from socketspec.connection import Connection, Identity, SessionInfo, utcnow

SHARD, SHARDS = 1, 2
ROOM = next(f"hall-{i}" for i in range(100) if home_of(f"hall-{i}", SHARDS) == SHARD)


class Member:
    def __init__(self, conn_id: str) -> None:
        now = utcnow()
        self.conn = Connection(
            id=conn_id,
            raw_socket=None,
            identity=Identity(user_id=None, role=None, scopes=[], authenticated=False),
            session=SessionInfo(started_at=now),
            connected_at=now,
            last_active=now,
            metadata={},
            namespace="/",
        )
        self.frames: list[bytes] = []

    @property
    def id(self) -> str:
        return self.conn.id

    def deliver(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


async def member_of_the_room(tmp_path: Path) -> tuple[ClusterRoomStore, Member]:
    store = ClusterRoomStore(SHARD, SHARDS, 1, tmp_path)
    member = Member(store.new_connection_id())
    await store.attach(member)
    await store.join(ROOM, member.id, 0)  # homed here: decided without a link
    return store, member


def deliver(room: str, frame: bytes, origin: str = "") -> Deliver:
    return Deliver(room, [], None, frame, 0, origin)


async def test_a_second_copy_of_one_origin_is_dropped(tmp_path: Path) -> None:
    store, member = await member_of_the_room(tmp_path)
    store.on_message(0, 1, deliver(ROOM, b"a", ":0.1.7"))  # the dead home's copy
    store.on_message(0, 1, deliver(ROOM, b"a", ":0.1.7"))  # the sender's own
    store.on_message(0, 1, deliver(ROOM, b"b", ":0.1.8"))
    assert member.frames == [b"a", b"b"]


async def test_broadcasts_without_an_origin_are_always_delivered(tmp_path: Path) -> None:
    store, member = await member_of_the_room(tmp_path)
    store.on_message(0, 1, deliver(ROOM, b"a"))
    store.on_message(0, 1, deliver(ROOM, b"a"))
    assert member.frames == [b"a", b"a"]


async def test_the_oldest_origins_are_forgotten_past_the_bound(tmp_path: Path) -> None:
    store, member = await member_of_the_room(tmp_path)
    for n in range(SEEN_ORIGINS + 1):
        store.on_message(0, 1, deliver(ROOM, b"x", f":0.1.{n}"))
    assert len(member.frames) == SEEN_ORIGINS + 1
    store.on_message(0, 1, deliver(ROOM, b"x", ":0.1.0"))  # forgotten: new again
    store.on_message(0, 1, deliver(ROOM, b"x", f":0.1.{SEEN_ORIGINS}"))  # remembered
    assert len(member.frames) == SEEN_ORIGINS + 2
