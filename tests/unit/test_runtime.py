"""The connection runtime's held outbound (a recovery's replay) and its kept ack replies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from socketspec.connection import Connection, Identity, SessionInfo
from socketspec.recovery import AckCache
from socketspec.runtime import ConnectionRuntime
from socketspec.session import SessionConfig
from socketspec.state import ConnState


class SlowTransport:
    """Holds what is written until ``read`` takes it; ``max_outbound`` bytes at most."""

    def __init__(self, max_outbound: int) -> None:
        self.max_outbound = max_outbound
        self.unread: list[bytes] = []
        self.written: list[bytes] = []
        self._read = asyncio.Event()

    def write(self, data: bytes) -> None:
        assert self.outbound_backlog() + len(data) <= self.max_outbound or not self.unread
        self.unread.append(data)
        self.written.append(data)

    async def close(self, code: int, reason: str) -> None:
        return None

    def flush_if_quiet(self) -> None:
        return None

    def outbound_backlog(self) -> int:
        return sum(len(f) for f in self.unread)

    async def wait_writable(self) -> None:
        self._read.clear()
        await self._read.wait()

    def read(self) -> None:
        self.unread.clear()
        self._read.set()


async def noclose(code: int, reason: str) -> None:
    return None


def runtime(transport: SlowTransport) -> ConnectionRuntime:
    now = datetime.now(UTC)
    conn = Connection("c", None, Identity(), SessionInfo(started_at=now), now, now)
    return ConnectionRuntime(conn, transport, SessionConfig(), None, noclose)


async def test_held_frames_wait_then_go_in_order_as_fast_as_they_are_read() -> None:
    transport = SlowTransport(max_outbound=25)
    rt = runtime(transport)
    rt.hold()
    frames = [b"x" * 10 + bytes([n]) for n in range(6)]
    for frame in frames[:4]:
        assert rt.deliver(frame)
    assert transport.written == []  # held, even before the connection is open
    rt.machine.move(ConnState.OPEN)
    release = asyncio.ensure_future(rt.release_held())
    await asyncio.sleep(0)
    assert transport.written == frames[:2]  # a third would pass max_outbound: it waits
    rt.deliver(frames[4])  # live traffic meanwhile goes behind the replay
    while not release.done():
        transport.read()
        await asyncio.sleep(0)
    assert await release == 5
    rt.deliver(frames[5])  # released: direct again
    assert transport.written == frames


async def test_a_closing_connection_stops_the_release() -> None:
    transport = SlowTransport(max_outbound=15)
    rt = runtime(transport)
    rt.hold()
    rt.deliver(b"a" * 10)
    rt.deliver(b"b" * 10)
    rt.machine.move(ConnState.OPEN)
    release = asyncio.ensure_future(rt.release_held())
    await asyncio.sleep(0)
    rt.machine.move(ConnState.CLOSING)
    transport.read()
    assert await release == 1
    assert not rt.deliver(b"late")


async def test_replies_are_kept_and_only_inherited_ones_answer_a_resend() -> None:
    transport = SlowTransport(max_outbound=1000)
    rt = runtime(transport)
    rt.machine.move(ConnState.OPEN)
    rt.acks = AckCache(2)
    rt.reply("a1", b"r1")
    assert rt.stored_reply("a1") is None  # a client may reuse an id within one session
    rt.inherited_acks = AckCache(2, [("old", b"r0")])
    assert rt.stored_reply("old") == b"r0"
    rt.send_error("X", "boom", ack="a2", keep=True)
    rt.send_error("X", "not kept", ack="a3")
    assert [ack for ack, _ in rt.ack_replies()] == ["old", "a1", "a2"]
