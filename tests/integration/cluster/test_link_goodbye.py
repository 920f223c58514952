"""An exiting shard instance says Goodbye on each link and waits for the answers before
closing it, over a real Unix socket (the other end played by the test)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from socketspec.cluster.codec import Goodbye, Hello, LinkDecoder, encode
from socketspec.cluster.links import GOODBYE_WAIT, LinkManager, LinkPhase, UnixSocketLink


class NoHandler:
    def on_message(self, peer: int, generation: int, message: object) -> None: ...

    def on_peer_up(self, peer: int, generation: int) -> None: ...

    def on_peer_down(self, peer: int, generation: int) -> None: ...


async def test_an_instance_waits_for_the_answers_to_its_goodbye_then_closes(
    tmp_path: Path,
) -> None:
    """The peer's Goodbye ends the wait; the link then closes and the peer is down."""
    manager = LinkManager(0, 2, 1, tmp_path, NoHandler())
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    _, link = await loop.create_unix_connection(lambda: UnixSocketLink(manager), sock=ours)
    theirs.setblocking(False)
    # The peer's Hello registers the link.
    await loop.sock_sendall(theirs, encode(Hello(1, 4)))
    await asyncio.sleep(0.05)
    assert manager.is_up(1) and manager.generation_of(1) == 4
    closing = asyncio.create_task(manager.close())
    decoder = LinkDecoder()
    said: list[object] = []
    async with asyncio.timeout(5):
        while not any(isinstance(m, Goodbye) for m in said):
            said.extend(decoder.feed(await loop.sock_recv(theirs, 65536)))
    assert link.phase is LinkPhase.LEAVING
    await loop.sock_sendall(theirs, encode(Goodbye(1, 4)))
    async with asyncio.timeout(2):
        await closing
    assert link.phase is LinkPhase.CLOSED and not manager.is_up(1)
    theirs.close()


async def test_a_peer_that_never_answers_holds_the_exit_at_most_the_goodbye_wait(
    tmp_path: Path,
) -> None:
    manager = LinkManager(0, 2, 1, tmp_path, NoHandler())
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    await loop.create_unix_connection(lambda: UnixSocketLink(manager), sock=ours)
    theirs.setblocking(False)
    await loop.sock_sendall(theirs, encode(Hello(1, 4)))
    await asyncio.sleep(0.05)
    assert manager.is_up(1)
    started = loop.time()
    async with asyncio.timeout(GOODBYE_WAIT + 5):  # + the bounded wait for the close
        await manager.close()
    assert loop.time() - started >= GOODBYE_WAIT * 0.9
    assert not manager.is_up(1)
    theirs.close()
