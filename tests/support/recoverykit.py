"""The connection-state recovery fault scenario, over real cluster processes and real sockets.

``run_scenario(clusters, faults, config)`` opens ``config.members`` clients (spread over the
clusters' URLs, each joining one of the app's rooms) and one publisher per room calling the
acked ``shout`` at a steady rate, all with ``reconnect=``; meanwhile it drops a share of the
clients at random (``Client.drop``, paused up to ``config.max_pause``) and runs ``faults`` at
their times (``kill_shard``, ``reload``, or a caller's own, such as killing a node). Then it
waits until every client is open again and has caught up, and ``verdict`` says what broke
the guarantees of docs/recovery.md:

- every member of a room has the room's messages exactly once, in position order: offsets
  contiguous within an epoch, from the position of its join (read from the recovery token
  it got with the join), and every member of a room the same sequence;
- every acked send appears;
- a send appears twice only when it was resent after a drop (the client resends unanswered
  calls with their ack id) and the shard that ran it first was killed (its stored replies
  died with it): the publisher knows the pid serving it when it sent.

The app is tests/integration/apps/recovery_app.py. Used by tests/integration/recovery/ (2
shards), by the two-node test with Redis and by ``make chaos`` at a larger scale.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from socketspec.client import Client, ClientState, ErrorReply, Reconnect, connect

APPS = Path(__file__).resolve().parents[1] / "integration" / "apps"
APP = "recovery_app:app"
ROOMS = [f"room-{n}" for n in range(5)]  # recovery_app.ROOMS
READY = re.compile(r"shard (\d+) ready \(pid (\d+)\)")
# Quick retries: the outages of the scenario are its own pauses, a kill or a reload.
RECONNECT = Reconnect(initial=0.1, maximum=1.0, jitter=0.5)


class Cluster(Protocol):
    """What the scenario needs of a running ``socketspec-cluster`` (clusterkit's
    ``ClusterProcess``): its URL, its shards' first pids and its stderr."""

    pids: list[int]

    def url(self, namespace: str = "") -> str: ...

    def stderr_text(self) -> str: ...

    def send(self, signum: int) -> None: ...


@dataclass(frozen=True)
class Config:
    members: int = 100  # clients in the rooms (spread evenly)
    rooms: Sequence[str] = tuple(ROOMS)
    rate: float = 8.0  # shouts per second of each publisher (one per room)
    load: float = 20.0  # seconds of publishing
    drop_share: float = 1 / 3  # of every client (publishers included), dropped once each
    drop_window: tuple[float, float] = (1.0, 15.0)  # when the drops happen
    max_pause: float = 5.0
    settle: float = 25.0  # after the load: how long everyone may take to catch up
    seed: int = 16
    reconnect: Reconnect = RECONNECT
    call_timeout: float = 30.0


@dataclass
class Send:
    publisher: str
    seq: int
    room: str
    pid_at_send: int | None  # the process serving the publisher when it sent
    acked: bool = False
    error: str | None = None
    resent: bool = False
    answered_by: int | None = None  # the pid in the ack


@dataclass
class Member:
    client: Client
    room: str
    name: str
    join_position: str | None = None
    conn_id: str | None = None
    got: list[tuple[str, int, str, int]] = field(default_factory=list)  # epoch, off, pub, seq


@dataclass
class Publisher:
    client: Client
    room: str
    name: str
    pid: int | None = None
    sends: list[Send] = field(default_factory=list)


@dataclass
class Outcome:
    members: list[Member]
    publishers: list[Publisher]
    killed_pids: set[int]
    drops: int
    faults: list[str]
    took: float
    open_at_end: int

    @property
    def sends(self) -> list[Send]:
        return [send for publisher in self.publishers for send in publisher.sends]


Fault = Callable[[], Awaitable[set[int]]]  # returns the pids it killed


def token_rooms(token: str | None) -> dict[str, str | None]:
    """The rooms and positions a recovery token carries (read, not verified)."""
    if not token:
        return {}
    body = token.split(".", 1)[0]
    data = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    rooms = data.get("r") or {}
    return dict(rooms)


def current_pids(cluster: Cluster) -> dict[int, int]:
    """Each shard's latest pid: the announced ones, then every later "ready" line."""
    pids = dict(enumerate(cluster.pids))
    for found in READY.finditer(cluster.stderr_text()):
        pids[int(found.group(1))] = int(found.group(2))
    return pids


async def wait_replaced(cluster: Cluster, shard: int, old: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (pid := current_pids(cluster).get(shard)) == old:
        if time.monotonic() > deadline:
            raise AssertionError(f"shard {shard} (pid {old}) not replaced within {timeout:g}s")
        await asyncio.sleep(0.05)
    assert pid is not None
    return pid


def kill_shard(cluster: Cluster, shard: int) -> Fault:
    """kill -9 of ``shard`` (whichever process serves it now); waits for its replacement."""

    async def fault() -> set[int]:
        victim = current_pids(cluster)[shard]
        os.kill(victim, signal.SIGKILL)
        await wait_replaced(cluster, shard, victim, 30.0)
        return {victim}

    return fault


def kill_node(cluster: Cluster, kill: Callable[[], None]) -> Fault:
    """kill -9 of a whole node (``kill``: clusterkit's ``ClusterProcess.kill``, which kills
    its supervisor and every shard); its clients must come back through ``urls`` that
    reach another node (a balancer)."""

    async def fault() -> set[int]:
        victims = set(current_pids(cluster).values())
        await asyncio.to_thread(kill)
        return victims

    return fault


def reload(cluster: Cluster) -> Fault:
    """SIGHUP: a rolling restart of every shard; waits until each one was replaced."""

    async def fault() -> set[int]:
        before = current_pids(cluster)
        cluster.send(signal.SIGHUP)
        for shard, pid in before.items():
            await wait_replaced(cluster, shard, pid, 60.0)
        return set()

    return fault


async def _pid_of(client: Client) -> int | None:
    try:
        reply = await client.call("whoami", {}, timeout=10)
    except Exception:
        return None
    return int(reply["pid"])


async def _open(url: str, config: Config, on_recover: Any = None) -> Client:
    return await connect(
        url, reconnect=config.reconnect, on_recover=on_recover, open_timeout=15, max_offline=10_000
    )


def _pid_tracker(publisher: Publisher) -> Callable[[Client, bool, Any], Awaitable[None]]:
    """An ``on_recover`` keeping ``publisher.pid`` the process that serves it now."""

    async def refresh(client: Client, recovered: bool, missed: Any) -> None:
        publisher.pid = None  # unknown until the new shard answers
        publisher.pid = await _pid_of(client)

    return refresh


async def _collect(member: Member, stop: asyncio.Event) -> None:
    client = member.client
    while True:
        try:
            message = await client.receive_message("shouted", timeout=0.3)
        except TimeoutError:
            if stop.is_set():
                return
            continue
        except Exception:  # closed for good: the verdict counts it
            return
        epoch, _, offset = str(message.get("pos", "?:0")).rpartition(":")
        payload = message.get("payload") or {}
        member.got.append((epoch, int(offset), payload["publisher"], int(payload["seq"])))


async def _publish(publisher: Publisher, config: Config, started: float) -> None:
    client = publisher.client
    for seq in range(int(config.load * config.rate)):
        due = started + seq / config.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        send = Send(publisher.name, seq, publisher.room, publisher.pid)
        publisher.sends.append(send)
        resent_before = client.resent_calls
        try:
            reply = await client.call(
                "shout",
                {"room": publisher.room, "publisher": publisher.name, "seq": seq},
                timeout=config.call_timeout,
            )
        except ErrorReply as exc:
            send.error = str(exc.payload.get("code"))
        except Exception as exc:  # timeout, closed for good
            send.error = type(exc).__name__
        else:
            send.acked = True
            send.answered_by = int(reply["pid"])
        send.resent = client.resent_calls > resent_before


async def run_scenario(
    clusters: Sequence[Cluster],
    faults: Sequence[tuple[float, Fault]],
    config: Config = Config(),
    *,
    urls: Sequence[str] | None = None,
) -> Outcome:
    """The scenario against ``clusters`` (each one a node: clients are spread over their
    URLs, or over ``urls``, say a balancer's in front of nodes one of which is killed),
    with ``faults`` run at their offsets (seconds after the load starts)."""
    rng = random.Random(config.seed)
    urls = list(urls) if urls else [cluster.url() for cluster in clusters]
    began = time.monotonic()
    members: list[Member] = []
    publishers: list[Publisher] = []
    try:
        for n in range(config.members):
            room = config.rooms[n % len(config.rooms)]
            client = await _open(urls[n % len(urls)], config)
            member = Member(client, room, f"m{n}")
            await client.call("join", {"room": room}, timeout=15)
            member.join_position = token_rooms(client.recovery_token).get(room)
            member.conn_id = client.conn_id
            members.append(member)
        for n, room in enumerate(config.rooms):
            publisher = Publisher(None, room, f"p{n}")  # type: ignore[arg-type]
            publisher.client = await _open(urls[n % len(urls)], config, _pid_tracker(publisher))
            publisher.pid = await _pid_of(publisher.client)
            publishers.append(publisher)

        stop = asyncio.Event()
        collectors = [asyncio.create_task(_collect(m, stop)) for m in members]
        started = time.monotonic()
        publishing = [asyncio.create_task(_publish(p, config, started)) for p in publishers]

        everyone = [m.client for m in members] + [p.client for p in publishers]
        dropped = rng.sample(everyone, int(len(everyone) * config.drop_share))
        low, high = config.drop_window
        drop_plan = sorted(
            ((rng.uniform(low, high), c, rng.uniform(0, config.max_pause)) for c in dropped),
            key=lambda item: item[0],
        )

        async def drops() -> int:
            done = 0
            for at, client, pause in drop_plan:
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                if client.state is ClientState.OPEN:
                    await client.drop(pause=pause)
                    done += 1
            return done

        killed: set[int] = set()
        ran: list[str] = []

        async def run_faults() -> None:
            for at, fault in sorted(faults, key=lambda item: item[0]):
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                name = getattr(fault, "__qualname__", "fault").split(".")[0]
                killed.update(await fault())
                ran.append(f"{name} at {at:g}s ({time.monotonic() - started:.1f}s when done)")

        drop_count, _ = await asyncio.gather(drops(), run_faults())
        await asyncio.gather(*publishing)
        await _settle(members, publishers, config.settle)
        stop.set()
        await asyncio.gather(*collectors)
        open_at_end = sum(c.state is ClientState.OPEN for c in everyone)
        return Outcome(
            members,
            publishers,
            killed,
            drop_count,
            ran,
            time.monotonic() - began,
            open_at_end,
        )
    finally:
        clients = [m.client for m in members] + [p.client for p in publishers]
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def _settle(members: list[Member], publishers: list[Publisher], timeout: float) -> None:
    """Until every client is open and every member has as many messages of its room as the
    best-served member of that room (and nothing changed for a second), or ``timeout``."""
    deadline = time.monotonic() + timeout
    last: tuple[int, ...] = ()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        clients = [m.client for m in members] + [p.client for p in publishers]
        best: Counter[str] = Counter()
        for member in members:
            best[member.room] = max(best[member.room], len(member.got))
        counts = tuple(len(m.got) for m in members)
        caught_up = all(len(m.got) == best[m.room] for m in members)
        all_open = all(c.state is ClientState.OPEN for c in clients)
        if counts != last:
            last, quiet_since = counts, time.monotonic()
        if caught_up and all_open and time.monotonic() - quiet_since > 1.0:
            return
        await asyncio.sleep(0.1)


def verdict(outcome: Outcome) -> list[str]:
    """Every broken guarantee, one line each (empty: the run kept them all)."""
    problems: list[str] = []
    sends = {(s.publisher, s.seq): s for s in outcome.sends}
    total = len(outcome.members) + len(outcome.publishers)
    if outcome.open_at_end != total:
        problems.append(f"{total - outcome.open_at_end} client(s) not open at the end")
    by_room: dict[str, list[Member]] = defaultdict(list)
    for member in outcome.members:
        by_room[member.room].append(member)
        if member.client.conn_id != member.conn_id:
            problems.append(
                f"{member.name}: conn_id {member.conn_id} became {member.client.conn_id}"
            )
        if member.client.room_counts[member.room] != len(member.got):
            problems.append(
                f"{member.name}: the client counted {member.client.room_counts[member.room]} "
                f"messages of {member.room}, the test read {len(member.got)}"
            )
        problems.extend(_order_problems(member))
    for room, room_members in sorted(by_room.items()):
        reference = max(room_members, key=lambda m: len(m.got))
        expected = [(e, o, p, s) for e, o, p, s in reference.got]
        for member in room_members:
            if member.got != expected:
                problems.append(_difference(member, reference))
        seen = Counter((p, s) for _, _, p, s in expected)
        for key, count in seen.items():
            if count > 1:
                send = sends.get(key)
                if send is None or not _may_repeat(send, outcome.killed_pids):
                    problems.append(f"{room}: {key} appears {count} times ({send})")
        for send in outcome.sends:
            if send.room == room and send.acked and (send.publisher, send.seq) not in seen:
                problems.append(f"{room}: acked send {send.publisher}#{send.seq} never arrived")
    return problems


def _may_repeat(send: Send, killed: set[int]) -> bool:
    """A resent send may run twice only when the shard that ran it first was killed."""
    if not send.resent:
        return False
    return send.pid_at_send is None or send.pid_at_send in killed


def _order_problems(member: Member) -> list[str]:
    problems: list[str] = []
    previous: tuple[str, int] | None = None
    if member.join_position is not None:
        epoch, _, offset = member.join_position.rpartition(":")
        previous = (epoch, int(offset))
    for epoch, offset, publisher, seq in member.got:
        if previous is not None:
            same_epoch = epoch == previous[0]
            if (same_epoch and offset != previous[1] + 1) or (not same_epoch and offset != 1):
                problems.append(
                    f"{member.name} ({member.room}): {epoch}:{offset} ({publisher}#{seq}) "
                    f"after {previous[0]}:{previous[1]}"
                )
                if len(problems) >= 3:
                    return problems
        previous = (epoch, offset)
    return problems


def _difference(member: Member, reference: Member) -> str:
    mine, theirs = member.got, reference.got
    index = next(
        (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
        min(len(mine), len(theirs)),
    )
    return (
        f"{member.name} ({member.room}, {len(mine)} messages) differs from {reference.name} "
        f"({len(theirs)}) at #{index}: {mine[index : index + 2]} vs {theirs[index : index + 2]}"
    )


def summary(outcome: Outcome) -> str:
    sends = outcome.sends
    twice = 0
    for member in {m.room: m for m in outcome.members}.values():  # one member per room
        counts = Counter((p, s) for _, _, p, s in member.got)
        twice += sum(count > 1 for count in counts.values())
    return (
        f"{len(outcome.members)} members, {len(outcome.publishers)} publishers, "
        f"{len(sends)} sends ({sum(s.acked for s in sends)} acked, "
        f"{sum(s.resent for s in sends)} resent, {sum(s.error is not None for s in sends)} "
        f"failed, {twice} ran twice), {sum(len(m.got) for m in outcome.members)} deliveries, "
        f"{outcome.drops} drops, reconnects "
        f"{sum(m.client.reconnects for m in outcome.members)}, faults {outcome.faults}, "
        f"killed {sorted(outcome.killed_pids)}, {outcome.took:.1f}s"
    )
