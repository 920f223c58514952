"""A member that stops reading while its room is flooded, over a real cluster: it is closed
with 4008 and, when it reads again (long after the server dropped it), it finds a bounded
backlog, then the 4008 close frame, then the end of the stream."""

from __future__ import annotations

import asyncio
import socket
import time

from clusterkit import Pool, StartCluster, token_for
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request, TextMessage

from socketspec.cluster.store import home_of
from socketspec.server.outbound import KERNEL_UNSENT_LIMIT

KIB = 1024
MAX_OUTBOUND = 64 * KIB
CLOSE_TIMEOUT = 5.0  # the server's close_timeout: it drops a silent peer after that


class StalledReader:
    """A WebSocket client over a socket with a 4 KiB receive buffer that reads only when
    told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def open(cls, port: int, path: str, token: str) -> StalledReader:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        client = cls(sock)
        await client.send(Request(host=f"127.0.0.1:{port}", target=f"{path}?token={token}"))
        return client

    async def send(self, event: Request | TextMessage) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, self.ws.send(event))

    async def next_event(self, timeout: float = 10.0) -> object:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                for event in self.ws.events():
                    return event
                data = await loop.sock_recv(self.sock, 65536)
                if not data:
                    return None  # the TCP end
                self.ws.receive_data(data)

    async def text(self, timeout: float = 10.0) -> str:
        """The next text message, a fresh recovery token skipped (as clients do)."""
        while True:
            event = await self.next_event(timeout)
            if isinstance(event, TextMessage) and '"event":"__recovery__"' not in event.data:
                return event.data
            assert event is not None, "the stream ended"


async def test_a_stalled_member_reads_again_and_finds_4008_after_a_bounded_backlog(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster("cluster_rooms_app:app", 2, "--max-outbound", "64KiB")
    room = "flooded"
    stalled = await StalledReader.open(cluster.port, cluster.path, token_for("stalled"))
    assert '"__connect__"' in await stalled.text()
    await stalled.send(
        TextMessage(data=f'{{"event":"join","payload":{{"room":"{room}"}},"ack":1}}')
    )
    assert '"__ack__"' in await stalled.text()
    # It reads no more. The flood comes from the other shard than the room's home, so
    # every tick crosses a link.
    async with Pool(cluster.url(), token=True) as pool:
        placed = await pool.on_shards([1 - home_of(room, 2)])
        (flooder,) = next(iter(placed.values()))
        await flooder.call("join", {"room": room})
        ticks = 20_000  # ~1 MB to each member: far past what the stalled one may hold
        await flooder.emit("stream", {"rooms": [room], "count": ticks, "interval": 0}, ack="flood")
        got = 0
        async with asyncio.timeout(60):
            while got < ticks:  # a member that reads gets every tick
                tick = await flooder.receive("tick", timeout=30)
                assert tick["n"] == got
                got += 1
        assert (await flooder.receive_message("__ack__", timeout=30))["payload"]["sent"] == ticks
        # Long after the server dropped the stalled connection (close_timeout)...
        await asyncio.sleep(CLOSE_TIMEOUT + 1)
        # ...it reads again: old ticks, in order, then the close frame with 4008.
        backlog = 0
        started = time.monotonic()
        while True:
            event = await stalled.next_event(timeout=10)
            assert event is not None, f"a TCP end after {backlog} bytes, no close frame"
            if isinstance(event, CloseConnection):
                break
            if isinstance(event, TextMessage):
                backlog += len(event.data)
        assert event.code == 4008, event
        assert backlog < KERNEL_UNSENT_LIMIT + MAX_OUTBOUND, backlog
        assert time.monotonic() - started < 10
        assert await stalled.next_event() is None  # then the TCP end
        stalled.sock.close()
        # The cluster serves on.
        assert await flooder.call("whoami") is not None
