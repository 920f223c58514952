"""Connection-state recovery through the TestClient: the session's id, identity, metadata
and rooms come back with every missed message, once, in order; refused tokens get their
codes and a fresh session; resent acked messages are answered, not run twice."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from pydantic import BaseModel

from socketspec import Connection, JWTAuth, Recovery, SocketApp
from socketspec.errors import ErrorCode, SystemEvent
from socketspec.metrics import recoveries, recovery_ack_replays, recovery_replayed_messages
from socketspec.recovery import TokenIdentity, TokenSigner
from socketspec.rooms import Room
from socketspec.session import SessionConfig
from socketspec.testing import TestClient, TestConnection

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

SECRET = "s3cret-for-tests"


class Target(BaseModel):
    room: str


class Say(BaseModel):
    room: str
    n: int


def make_app(**options: Any) -> SocketApp:
    options.setdefault(
        "rooms", [Room("lobby", history_size=100), Room("chat:{id}", history_size=100)]
    )
    options.setdefault("recovery", Recovery(secret=SECRET))
    app = SocketApp(**options)
    app.state = {"runs": 0}  # type: ignore[attr-defined]

    @app.on("join")
    async def join(conn: Connection, body: Target) -> dict[str, str]:
        await app.rooms.join(conn, body.room)
        return {"joined": body.room}

    @app.on("leave")
    async def leave(conn: Connection, body: Target) -> dict[str, str]:
        await app.rooms.leave(conn, body.room)
        return {"left": body.room}

    @app.on("say")
    async def say(conn: Connection, body: Say) -> dict[str, int]:
        app.state["runs"] += 1  # type: ignore[attr-defined]
        await app.rooms.broadcast(body.room, "said", {"n": body.n})
        return {"n": body.n}

    @app.on("tag")
    async def tag(conn: Connection, body: Target) -> dict[str, Any]:
        conn.metadata["tag"] = body.room
        return {"tag": body.room}

    return app


async def said(conn: TestConnection, count: int) -> list[int]:
    return [(await conn.receive("said"))["n"] for _ in range(count)]


def counter(metric: Any, **labels: str) -> float:
    child = metric.labels(**labels) if labels else metric
    return float(child._value.get())


async def test_the_greeting_carries_a_token_and_joins_refresh_it() -> None:
    app = make_app()
    async with TestClient(app).connect() as conn:
        first = conn.recovery_token
        assert first is not None
        greeting = conn.pending()  # __connect__ is housekeeping, still in the inbox
        assert greeting[0]["payload"]["recovered"] is False
        assert greeting[0]["payload"]["recovery"]["window"] == 120.0
        await conn.call("join", {"room": "lobby"})
        assert conn.recovery_token not in (None, first)
        # __recovery__ never reaches the inbox, so never receive()
        await conn.emit("tag", {"room": "x"}, ack=1)
        message = await conn.receive()
        assert message["event"] == "__ack__"
        assert not [m for m in conn.pending() if m["event"] == SystemEvent.RECOVERY]


async def test_recovery_with_no_message_received_before_the_drop() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        alice = await client.connect()
        bob = await client.connect()
        await alice.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        old_id = alice.id
        await alice.drop()
        for n in range(3):
            await bob.call("say", {"room": "lobby", "n": n})
        back = await alice.reconnect()
        assert back.recovered and back.missed == {}
        assert back.id == old_id
        assert back.connection.recovered
        assert "lobby" in back.connection.rooms
        assert await said(back, 3) == [0, 1, 2]
        await bob.call("say", {"room": "lobby", "n": 3})
        assert await said(back, 1) == [3]
        assert [m for m in back.pending() if m["event"] == "said"] == []
        assert back.positions["lobby"].endswith(":4")


async def test_positions_are_in_the_envelope_of_history_rooms_only() -> None:
    app = make_app()
    async with TestClient(app).connect() as conn:
        await conn.call("join", {"room": "lobby"})
        await conn.call("join", {"room": "plain"})
        await conn.call("say", {"room": "lobby", "n": 1})
        await conn.call("say", {"room": "plain", "n": 2})
        messages = [m for m in conn.pending() if m["event"] == "said"]
        assert messages[0]["room"] == "lobby" and messages[0]["pos"].endswith(":1")
        assert "pos" not in messages[1] and "room" not in messages[1]


async def test_recovery_twice_in_a_row_misses_nothing_and_repeats_nothing() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        alice = await client.connect()
        bob = await client.connect()
        await alice.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        await bob.call("say", {"room": "lobby", "n": 0})
        assert await said(alice, 1) == [0]
        await alice.drop()
        await bob.call("say", {"room": "lobby", "n": 1})
        second = await alice.reconnect()
        assert second.recovered
        assert await said(second, 1) == [1]
        await second.drop(notify_server=True)
        await bob.call("say", {"room": "lobby", "n": 2})
        await bob.call("say", {"room": "lobby", "n": 3})
        third = await second.reconnect()
        assert third.recovered and third.id == alice.id
        assert await said(third, 2) == [2, 3]
        await asyncio.sleep(0.05)
        assert [m for m in third.pending() if m["event"] == "said"] == []


async def test_metadata_identity_and_several_rooms_come_back() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        conn = await client.connect()
        await conn.call("join", {"room": "lobby"})
        await conn.call("join", {"room": "chat:7"})
        await conn.call("join", {"room": "plain"})
        await conn.call("tag", {"room": "blue"})
        await conn.call("join", {"room": "gone"})
        await conn.call("leave", {"room": "gone"})
        await conn.drop()
        back = await conn.reconnect()
        assert back.recovered
        assert back.connection.rooms == {"lobby", "chat:7", "plain"}
        assert back.connection.metadata == {"tag": "blue"}
        members = await app.rooms.members("plain")
        assert [m.id for m in members] == [back.id]


async def test_a_gap_gives_recovered_false_and_the_missed_rooms() -> None:
    app = make_app(rooms=[Room("lobby", history_size=2), Room("chat:{id}", history_size=50)])
    client = TestClient(app)
    async with client:
        alice = await client.connect()
        bob = await client.connect()
        for room in ("lobby", "chat:1"):
            await alice.call("join", {"room": room})
            await bob.call("join", {"room": room})
        await bob.call("say", {"room": "lobby", "n": 0})
        await said(alice, 1)
        given = alice.positions["lobby"]
        await alice.drop()
        for n in range(1, 5):
            await bob.call("say", {"room": "lobby", "n": n})
        await bob.call("say", {"room": "chat:1", "n": 9})
        before = counter(recoveries, outcome="gap")
        back = await alice.reconnect()
        assert not back.recovered
        assert back.missed == {"lobby": given}
        assert back.id == alice.id and back.connection.rooms == {"lobby", "chat:1"}
        assert await said(back, 1) == [9]  # the covered room is replayed, the gap is not
        await bob.call("say", {"room": "lobby", "n": 5})
        assert await said(back, 1) == [5]
        assert counter(recoveries, outcome="gap") == before + 1


async def test_a_forged_token_is_invalid_and_the_session_is_fresh() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        before = counter(recoveries, outcome="invalid")
        conn = await client.connect(query_params={"recover": "bm90.aXQ"})
        greeting = await conn.receive_message(SystemEvent.CONNECT)
        assert greeting["payload"]["recovered"] is False
        error = await conn.receive_error(ErrorCode.RECOVERY_INVALID)
        assert error["event"] == "__connect__"
        assert conn.connection.query_params == {}
        assert counter(recoveries, outcome="invalid") == before + 1
        other = TokenSigner(b"not-the-secret", window=120, max_bytes=4096)
        forged = other.sign(conn.id, "/", TokenIdentity(), {}, {"lobby": None})
        conn2 = await client.connect(query_params={"recover": forged or ""})
        await conn2.receive_error(ErrorCode.RECOVERY_INVALID)
        assert conn2.id != conn.id and not conn2.connection.rooms


async def test_an_expired_token_is_refused() -> None:
    app = make_app(recovery=Recovery(secret=SECRET, window=0.2))
    client = TestClient(app)
    async with client:
        conn = await client.connect()
        await conn.call("join", {"room": "lobby"})
        await conn.drop()
        await asyncio.sleep(0.3)
        back = await conn.reconnect()
        await back.receive_error(ErrorCode.RECOVERY_EXPIRED)
        assert not back.recovered and back.id != conn.id and not back.connection.rooms


async def test_a_token_of_another_node_or_user_is_foreign() -> None:
    app = make_app()
    app.recovery_node = "node-a"
    other = make_app()
    other.recovery_node = "node-b"
    async with TestClient(app) as client, TestClient(other) as elsewhere:
        conn = await client.connect()
        token = conn.recovery_token
        assert token is not None
        moved = await elsewhere.connect(query_params={"recover": token})
        await moved.receive_error(ErrorCode.RECOVERY_FOREIGN)
        assert not moved.recovered

    auth_app = make_app(auth=JWTAuth(secret="jwt-secret-for-tests-0123456789ab"))

    def token_of(user: str) -> str:
        return jwt.encode({"sub": user}, "jwt-secret-for-tests-0123456789ab", algorithm="HS256")

    async with TestClient(auth_app) as client:
        alice = await client.connect(auth_token=token_of("alice"))
        await alice.call("join", {"room": "lobby"})
        await alice.drop()
        recovery = alice.recovery_token
        assert recovery is not None
        mallory = await client.connect(
            auth_token=token_of("mallory"), query_params={"recover": recovery}
        )
        await mallory.receive_error(ErrorCode.RECOVERY_FOREIGN)
        assert mallory.id != alice.id and mallory.identity.user_id == "mallory"
        back = await client.connect(
            auth_token=token_of("alice"), query_params={"recover": recovery}
        )
        assert back.recovered and back.id == alice.id


async def test_guards_rerun_when_skip_guards_is_false() -> None:
    for skip, expected in ((True, {"lobby", "vip"}), (False, {"lobby"})):
        app = make_app(recovery=Recovery(secret=SECRET, skip_guards=skip))
        allowed = {"vip": True}

        @app.room_guard("vip")
        def vip(conn: Connection, allowed: dict[str, bool] = allowed) -> bool:
            return allowed["vip"]

        async with TestClient(app) as client:
            conn = await client.connect()
            await conn.call("join", {"room": "lobby"})
            await conn.call("join", {"room": "vip"})
            await conn.drop()
            allowed["vip"] = False
            back = await conn.reconnect()
            assert back.connection.rooms == expected


async def test_a_half_open_connection_is_closed_and_its_session_taken_over() -> None:
    app = make_app()
    disconnects: list[str] = []

    @app.on_disconnect
    async def gone(conn: Connection, reason: str) -> None:
        disconnects.append(reason)

    client = TestClient(app)
    async with client:
        alice = await client.connect()
        bob = await client.connect()
        await alice.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        await alice.drop(notify_server=False)
        assert app.runtime(alice.id) is not None  # the server believes it is open
        await bob.call("say", {"room": "lobby", "n": 1})
        back = await alice.reconnect()
        assert back.recovered and back.id == alice.id
        assert disconnects == ["resumed"]
        assert app.runtime(back.id).conn is back.connection  # type: ignore[union-attr]
        assert await said(back, 1) == [1]
        members = await app.rooms.members("lobby")
        assert sorted(m.id for m in members) == sorted([back.id, bob.id])
        # The old connection's transport ending later does not touch the new one.
        await alice.close()
        assert app.runtime(back.id) is not None


async def test_a_resent_acked_message_is_answered_not_run_twice() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        conn = await client.connect()
        await conn.call("join", {"room": "lobby"})
        await conn.emit("say", {"room": "lobby", "n": 5}, ack="m-1")
        await conn.wait_idle()
        await conn.drop()  # the reply was sent but, say, never read
        runs = app.state["runs"]  # type: ignore[attr-defined]
        before = counter(recovery_ack_replays)
        back = await conn.reconnect()
        await back.emit("say", {"room": "lobby", "n": 5}, ack="m-1")
        reply = await back.receive_message("__ack__")
        assert reply == {"event": "__ack__", "ack": "m-1", "payload": {"n": 5}}
        assert app.state["runs"] == runs  # type: ignore[attr-defined]
        assert counter(recovery_ack_replays) == before + 1
        # A new ack id runs.
        assert await back.call("say", {"room": "lobby", "n": 6}) == {"n": 6}
        assert app.state["runs"] == runs + 1  # type: ignore[attr-defined]


async def test_a_resend_while_the_handler_still_runs_on_a_half_open_connection() -> None:
    app = make_app()
    release = asyncio.Event()
    runs: list[int] = []

    @app.on("slow")
    async def slow(conn: Connection) -> dict[str, str]:
        runs.append(1)
        await release.wait()
        return {"done": "yes"}

    client = TestClient(app)
    async with client:
        conn = await client.connect()
        await conn.emit("slow", {}, ack="s-1")
        await conn.drop(notify_server=False)
        asyncio.get_running_loop().call_later(0.1, release.set)
        back = await conn.reconnect()  # waits for the running handler, then takes its reply
        await back.emit("slow", {}, ack="s-1")
        reply = await back.receive_message("__ack__")
        assert reply["payload"] == {"done": "yes"}
        assert runs == [1]


async def test_a_replay_larger_than_max_outbound_is_not_dropped() -> None:
    app = make_app(rooms=[Room("lobby", history_size=500, history_bytes=10_000_000)])
    sender = TestClient(app)
    slow = TestClient(app, max_outbound=4096)
    async with sender, slow:
        reader = await slow.connect()
        bob = await sender.connect()
        await reader.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        await reader.drop()
        for n in range(300):  # ~15 kB of envelopes, far past 4 kB
            await bob.emit("say", {"room": "lobby", "n": n})
        await bob.wait_idle()
        before = counter(recovery_replayed_messages)
        back = await reader.reconnect()
        assert back.recovered
        assert await said(back, 300) == list(range(300))
        assert not back.closed
        assert counter(recovery_replayed_messages) == before + 300


async def test_a_long_lived_connection_keeps_a_fresh_token_past_the_window() -> None:
    app = make_app(
        recovery=Recovery(secret=SECRET, window=0.4),
        session=SessionConfig(heartbeat_interval=0.05, heartbeat_timeout=5, idle_timeout=0),
    )
    client = TestClient(app)
    async with client:
        alice = await client.connect()
        bob = await client.connect()
        await alice.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        first = alice.recovery_token
        await asyncio.sleep(1.0)  # more than twice the window, answering pings
        assert alice.recovery_token != first
        await alice.drop()
        await bob.call("say", {"room": "lobby", "n": 1})
        back = await alice.reconnect()
        assert back.recovered and back.id == alice.id
        assert await said(back, 1) == [1]


async def test_the_drain_notice_carries_each_connections_token() -> None:
    app = make_app()
    client = TestClient(app)
    async with client:
        conn = await client.connect()
        await conn.call("join", {"room": "lobby"})
        before = conn.recovery_token
        await app.drain(0.1)
        notice = await conn.receive(SystemEvent.SERVER_SHUTDOWN)
        assert notice["recovery"]["token"] == conn.recovery_token
        assert before is not None and conn.recovery_token is not None
        back = await conn.reconnect()
        assert back.recovered and back.id == conn.id


async def test_on_connect_hooks_see_recovered_connections() -> None:
    app = make_app()
    seen: list[bool] = []

    @app.on_connect
    async def hello(conn: Connection) -> None:
        seen.append(conn.recovered)

    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.drop()
        await conn.reconnect()
    assert seen == [False, True]


async def test_recovery_none_sends_no_token_and_ignores_recover() -> None:
    app = make_app(recovery=None)
    async with TestClient(app) as client:
        conn = await client.connect(query_params={"recover": "x.y"})
        greeting = await conn.receive_message(SystemEvent.CONNECT)
        assert "recovery" not in greeting["payload"]
        assert "recovered" not in greeting["payload"]
        await conn.call("join", {"room": "lobby"})
        assert conn.recovery_token is None
        assert not [m for m in conn.pending() if m["event"] == SystemEvent.ERROR]


async def test_an_app_wide_history_default_positions_plain_rooms() -> None:
    app = make_app(rooms=[], history_size=10)
    async with TestClient(app) as client:
        conn = await client.connect()
        await conn.call("join", {"room": "anything"})
        await conn.call("say", {"room": "anything", "n": 1})
        message = await conn.receive_message("said")
        assert message["room"] == "anything" and message["pos"].endswith(":1")


async def test_a_replay_stuck_on_a_half_open_connection_does_not_delay_the_next() -> None:
    app = make_app(rooms=[Room("lobby", history_size=500, history_bytes=10_000_000)])
    sender = TestClient(app)
    slow = TestClient(app, max_outbound=4096)
    async with sender, slow:
        reader = await slow.connect()
        bob = await sender.connect()
        await reader.call("join", {"room": "lobby"})
        await bob.call("join", {"room": "lobby"})
        await reader.drop()
        for n in range(300):
            await bob.emit("say", {"room": "lobby", "n": n})
        await bob.wait_idle()
        stuck = await reader.reconnect()  # its replay waits for a reader that never reads
        await asyncio.sleep(0.1)  # what fits in its 4 kB arrives
        got_first = [m["payload"]["n"] for m in stuck.pending() if m["event"] == "said"]
        assert 0 < len(got_first) < 300
        async with asyncio.timeout(2):  # the stuck replay is not waited for
            third = await stuck.reconnect()  # stuck is dropped unnoticed (half-open)
        assert third.recovered
        rest = await said(third, 300 - len(got_first))
        assert got_first + rest == list(range(300))
