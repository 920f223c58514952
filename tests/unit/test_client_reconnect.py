"""socketspec.client's reconnection and recovery against a scripted peer on 127.0.0.1.

The peer is a small ``websockets`` server that plays the server's side of recovery
(docs/recovery.md) by rule, not by running an app: it issues a token in every greeting
and after every join, positions the room messages it sends, recognises a known token
as a recovery (same connection id), answers a resent ack id from what it stored, and
can cut its TCP connections without a closing handshake. The real server side is
tested in tests/integration/recovery/.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed as ServerSideClosed

from socketspec.client import (
    Client,
    ClientState,
    ConnectionClosed,
    IllegalClientTransition,
    OfflineQueueFull,
    Reconnect,
    backoff_delay,
    connect,
)

FAST = Reconnect(initial=0.02, maximum=0.1, jitter=0.0)


def frame(event: str, payload: Any = None, ack: Any = None, **front: Any) -> str:
    body: dict[str, Any] = dict(front)
    body["event"] = event
    body["payload"] = {} if payload is None else payload
    if ack is not None:
        body["ack"] = ack
    return orjson.dumps(body).decode()


class Peer:
    """The scripted server: what each upgrade asked for, and its rule book."""

    def __init__(self) -> None:
        self.url = ""
        self.queries: list[dict[str, str]] = []
        self.received: list[dict[str, Any]] = []
        self.sessions: dict[str, str] = {}  # token -> conn_id
        self.replies: dict[tuple[str, Any], str] = {}  # (conn_id, ack) -> stored reply
        self.runs: dict[Any, int] = {}  # ack -> how many times a handler ran it
        self.offsets: dict[str, int] = {}
        self.missed: dict[str, str] = {}  # what the next recovery reports as not covered
        self.refuse_next: str | None = None  # an error code for the next recovery
        self.close_next: tuple[int, str] | None = None  # close the next upgrade at once
        self.connections: list[ServerConnection] = []
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)

    def token_for(self, conn_id: str) -> str:
        token = f"tok-{next(self._tokens)}"
        self.sessions[token] = conn_id
        return token

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = {k: v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        self.queries.append(query)
        self.connections.append(ws)
        if self.close_next is not None:
            code, reason = self.close_next
            self.close_next = None
            await ws.close(code, reason)
            return
        token = query.get("recover")
        refused, self.refuse_next = self.refuse_next, None
        recovered = token in self.sessions and refused is None
        conn_id = self.sessions[token] if recovered and token else f"conn-{next(self._ids)}"
        greeting: dict[str, Any] = {
            "conn_id": conn_id,
            "recovered": recovered and not self.missed,
            "recovery": {"token": self.token_for(conn_id), "window": 120.0},
        }
        if recovered and self.missed:
            greeting["missed"], self.missed = self.missed, {}
        await ws.send(frame("__connect__", greeting))
        if refused is not None:
            error = {"code": refused, "event": "__connect__", "message": "refused"}
            await ws.send(frame("__error__", error))
        try:
            async for message in ws:
                body = orjson.loads(message)
                self.received.append(body)
                await self.answer(ws, conn_id, body)
        except ServerSideClosed:
            pass

    async def answer(self, ws: ServerConnection, conn_id: str, body: dict[str, Any]) -> None:
        event, payload, ack = body["event"], body.get("payload") or {}, body.get("ack")
        stored = self.replies.get((conn_id, ack))
        if stored is not None:  # a resent ack id: the stored reply, not a second run
            await ws.send(stored)
            return
        if event == "join":
            await ws.send(frame("__recovery__", {"token": self.token_for(conn_id)}))
            await ws.send(frame("__ack__", {"room": payload["room"]}, ack))
        elif event == "publish":  # positioned room messages, to this connection only
            for n in range(payload["count"]):
                room = payload["room"]
                self.offsets[room] = self.offsets.get(room, 0) + 1
                pos = f"ep:{self.offsets[room]}"
                await ws.send(frame("said", {"n": n}, room=room, pos=pos))
            if ack is not None:
                await ws.send(frame("__ack__", {"sent": payload["count"]}, ack))
        elif event == "work_then_cut":  # runs, stores the reply, and the TCP goes away
            self.runs[ack] = self.runs.get(ack, 0) + 1
            self.replies[(conn_id, ack)] = frame("__ack__", {"runs": self.runs[ack]}, ack)
            ws.transport.abort()
        elif event == "echo":
            await ws.send(frame("echo", payload))
        elif event == "shutdown":
            notice = {"reason": "reload", "recovery": {"token": self.token_for(conn_id)}}
            await ws.send(frame("__server_shutdown__", notice))
            await ws.close(1001, "server shutdown")
        elif event == "kick":
            await ws.close(1000, "kicked")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    state = Peer()
    async with serve(state.handler, "127.0.0.1", 0, ping_interval=None) as running:
        port = running.sockets[0].getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/ws"
        yield state


async def reconnected(client: Client, count: int, timeout: float = 5.0) -> None:
    """Until ``client`` reconnected ``count`` times in all (on_recover included) and is open."""
    for _ in range(int(timeout / 0.01)):
        if client.reconnects >= count and client.state is ClientState.OPEN:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{client.reconnects} of {count} reconnections within {timeout:g}s")


# -- the backoff -------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum_and_jitter_takes_a_random_share() -> None:
    policy = Reconnect(initial=0.5, maximum=4.0, jitter=0.0)
    assert [backoff_delay(policy, n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff_delay(policy, 10_000) == 4.0  # no overflow however long the outage
    half = Reconnect(initial=1.0, maximum=8.0, jitter=0.5)
    assert backoff_delay(half, 2, rand=lambda: 0.0) == 4.0
    assert backoff_delay(half, 2, rand=lambda: 1.0) == 2.0
    full = Reconnect(initial=1.0, maximum=8.0, jitter=1.0)
    assert backoff_delay(full, 3, rand=lambda: 1.0) == 0.0
    waits = {backoff_delay(full, 3) for _ in range(50)}
    assert len(waits) > 1 and all(0.0 <= w <= 8.0 for w in waits)


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"initial": 2.0, "maximum": 1.0}, {"jitter": 1.5}, {"attempts": 0}],
)
def test_reconnect_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Reconnect(**kwargs)


# -- recovery ----------------------------------------------------------------------------------


async def test_a_drop_reconnects_with_the_token_and_positions_and_keeps_the_id(
    peer: Peer,
) -> None:
    seen: list[tuple[bool, dict[str, str]]] = []

    def on_recover(client: Client, recovered: bool, missed: dict[str, str]) -> None:
        seen.append((recovered, missed))

    async with connect(peer.url, reconnect=FAST, on_recover=on_recover) as client:
        first_id = client.conn_id
        assert client.recovery_token == "tok-1"
        assert await client.call("join", {"room": "lobby"}) == {"room": "lobby"}
        assert client.recovery_token == "tok-2"  # the __recovery__ update, consumed
        assert await client.call("publish", {"room": "lobby", "count": 3}) == {"sent": 3}
        for n in range(3):
            message = await client.receive_message("said")
            assert (message["room"], message["pos"], message["payload"]) == (
                "lobby",
                f"ep:{n + 1}",
                {"n": n},
            )
        assert client.positions == {"lobby": "ep:3"}
        assert client.room_counts["lobby"] == 3

        await client.drop(pause=0.05)
        assert client.state is ClientState.RECONNECTING
        assert not client.closed
        await client.wait_open()
        assert client.conn_id == first_id
        assert client.recovered is True
        assert peer.queries[1]["recover"] == "tok-2"
        assert orjson.loads(peer.queries[1]["since"]) == {"lobby": "ep:3"}
        await reconnected(client, 1)
        assert seen == [(True, {})]
        # Twice in a row works the same, with the newest token.
        await client.drop()
        await reconnected(client, 2)
        assert peer.queries[2]["recover"] == "tok-3"
        assert client.conn_id == first_id
        # Housekeeping never reached the inbox.
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.05)


async def test_with_nothing_received_the_client_still_asks_with_its_token(peer: Peer) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        await client.drop()
        await reconnected(client, 1)
        assert peer.queries[1] == {"recover": "tok-1"}  # no positions yet: no since
        assert client.recovered


async def test_rooms_the_history_no_longer_covers_are_reported(peer: Peer) -> None:
    calls: list[tuple[bool, dict[str, str]]] = []

    async def on_recover(client: Client, recovered: bool, missed: dict[str, str]) -> None:
        await asyncio.sleep(0)
        calls.append((recovered, missed))

    async with connect(peer.url, reconnect=FAST, on_recover=on_recover) as client:
        await client.call("publish", {"room": "a", "count": 1})
        await client.call("publish", {"room": "b", "count": 1})
        peer.missed = {"a": "ep:1"}
        await client.drop()
        await reconnected(client, 1)
        assert calls == [(False, {"a": "ep:1"})]
        assert client.recovered is False
        assert client.missed == {"a": "ep:1"}
        assert client.positions == {"b": "ep:1"}  # a resyncs from the token's position


async def test_a_refused_token_starts_a_fresh_session(peer: Peer) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        await client.call("publish", {"room": "a", "count": 2})
        first_id = client.conn_id
        peer.refuse_next = "RECOVERY_EXPIRED"
        await client.drop()
        await reconnected(client, 1)
        assert client.conn_id != first_id
        assert client.recovered is False
        assert client.positions == {}
        assert await client.call("join", {"room": "a"}) == {"room": "a"}  # the error came first
        assert client.recovery_error is not None
        assert client.recovery_error["code"] == "RECOVERY_EXPIRED"
        assert [m["event"] for m in client.inbox.pending()] == ["__connect__", "said", "said"]


async def test_the_shutdown_notice_token_is_used_after_a_1001(peer: Peer) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        await client.emit("shutdown")
        notice = await client.receive("__server_shutdown__")
        assert notice["reason"] == "reload"
        await reconnected(client, 1)
        assert peer.queries[1]["recover"] == "tok-2"
        assert client.recovered


# -- what is sent across a reconnection --------------------------------------------------------


async def test_a_call_in_flight_is_resent_with_its_ack_id_and_resolves(peer: Peer) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        assert await client.call("work_then_cut", {}, timeout=5) == {"runs": 1}
        sent = [m for m in peer.received if m["event"] == "work_then_cut"]
        assert len(sent) == 2 and sent[0]["ack"] == sent[1]["ack"]
        assert peer.runs == {sent[0]["ack"]: 1}  # answered from the stored reply
        assert client.reconnects == 1
        assert client.resent_calls == 1


async def test_emits_while_reconnecting_wait_offline_and_the_queue_is_bounded(
    peer: Peer,
) -> None:
    async with connect(peer.url, reconnect=FAST, max_offline=2) as client:
        await client.drop(pause=0.3)
        await client.emit("echo", {"n": 1})
        await client.emit("echo", {"n": 2})
        with pytest.raises(OfflineQueueFull):
            await client.emit("echo", {"n": 3})
        with pytest.raises(OfflineQueueFull):  # a call too: nothing is dropped silently
            await client.call("publish", {"room": "r", "count": 0})
        assert await client.receive("echo") == {"n": 1}
        assert await client.receive("echo") == {"n": 2}
        with pytest.raises(TimeoutError):
            await client.receive("echo", timeout=0.1)
        assert await client.call("publish", {"room": "r", "count": 0}) == {"sent": 0}


async def test_a_call_made_while_reconnecting_is_sent_on_the_next_connection(
    peer: Peer,
) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        await client.drop(pause=0.2)
        assert await client.call("join", {"room": "x"}, timeout=5) == {"room": "x"}
        assert client.reconnects == 1


# -- when it does not reconnect ----------------------------------------------------------------


async def test_a_close_on_purpose_is_final(peer: Peer) -> None:
    async with connect(peer.url, reconnect=FAST) as client:
        await client.emit("kick")
        assert await client.wait_closed() == 1000
        assert client.state is ClientState.CLOSED
        assert client.reconnects == 0
        with pytest.raises(ConnectionClosed):
            await client.emit("echo")


async def test_refused_credentials_stop_it_unless_a_refresh_gives_new_ones(peer: Peer) -> None:
    async with connect(peer.url, token="old", reconnect=FAST) as client:
        peer.close_next = (4001, "authentication failed")
        await client.drop()
        assert await client.wait_closed() == 4001
        assert client.reconnects == 0

    async def refresh() -> str:
        return "new"

    async with connect(peer.url, token="old", reconnect=FAST, token_refresh=refresh) as client:
        peer.close_next = (4001, "authentication failed")
        await client.drop()
        await reconnected(client, 1)
        assert peer.queries[-1]["token"] == "new"
        assert peer.queries[-2]["token"] == "old"


async def test_it_gives_up_after_its_attempts() -> None:
    peer = Peer()
    async with serve(peer.handler, "127.0.0.1", 0, ping_interval=None) as running:
        port = running.sockets[0].getsockname()[1]
        policy = Reconnect(initial=0.01, maximum=0.02, jitter=0.0, attempts=3)
        client = await connect(f"ws://127.0.0.1:{port}/ws", reconnect=policy)
        running.close(close_connections=False)  # stops listening at once
        await client.drop()
        assert await client.wait_closed(timeout=5) == 1006
        assert client.state is ClientState.CLOSED
        assert len(peer.queries) == 1


async def test_close_while_reconnecting_stops_it(peer: Peer) -> None:
    client = await connect(peer.url, reconnect=FAST)
    await client.drop(pause=5.0)
    await client.emit("echo", {"never": True})
    await client.close()
    assert client.closed and client.close_code == 1000
    with pytest.raises(ConnectionClosed):
        await client.wait_open()
    await asyncio.sleep(0.05)
    assert len(peer.queries) == 1


async def test_without_reconnect_a_drop_closes_with_1006(peer: Peer) -> None:
    client = await connect(peer.url)
    await client.drop()
    assert await client.wait_closed() == 1006
    await client.close()


async def test_an_illegal_state_change_names_the_state(peer: Peer) -> None:
    client = await connect(peer.url, reconnect=FAST)
    await client.close()
    with pytest.raises(IllegalClientTransition, match="from closed to open"):
        client._transition(ClientState.OPEN)
