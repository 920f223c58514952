"""The HTTP publish API and ``Emitter`` over it, on a real 2-shard cluster: pushes to a room,
to a user with connections on both shards and to one connection; ``socket.users`` inside
handlers across shards; the order of pushed messages among a handler's broadcasts to the same
room; and the refusals (401, 400, 404, 405, 411, 413, 422)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from clusterkit import ClusterProcess, Pool, receive_n, token_for
from pushkit import KEY, api, launch

from socketspec import Emitter, EmitterError, SyncEmitter
from socketspec.client import Client, connect


async def joined(pool: Pool, placed: dict[int, list[Client]], room: str) -> list[Client]:
    clients = [client for shard in sorted(placed) for client in placed[shard]]
    for client in clients:
        await client.call("join", {"room": room}, timeout=10)
    return clients


async def test_publish_to_room_user_and_connection(cluster: ClusterProcess) -> None:
    async with Pool(cluster.url(), token=True, users="rest") as pool:
        placed = await pool.on_shards([0, 1])
        clients = await joined(pool, placed, "orders")
        status, answer = await api(
            cluster.port,
            "POST",
            "/api/publish",
            {"room": "orders", "event": "update", "payload": {"n": 1}},
            KEY,
        )
        assert (status, answer) == (200, {"delivered": 2})
        for client in clients:
            assert await client.receive("update", timeout=5) == {"n": 1}

        # One user, a connection on each shard.
        user = "dana"
        mine: dict[int, Client] = {}
        while len(mine) < 2:
            client = await connect(cluster.url(), token=token_for(user), open_timeout=10)
            shard = client.greeting["shard"]
            if shard in mine:
                await client.close()
            else:
                mine[shard] = client
        try:
            status, answer = await api(
                cluster.port,
                "POST",
                "/api/publish",
                {"user": user, "event": "shipped", "payload": {"order_id": 7}},
                KEY,
            )
            assert (status, answer) == (200, {"delivered": 2})
            for client in mine.values():
                assert await client.receive("shipped", timeout=5) == {
                    "order_id": 7,
                    "carrier": "post",
                }
            listed = await mine[0].call("my_connections", {}, timeout=10)
            assert listed == sorted(str(c.conn_id) for c in mine.values())
            # socket.users.emit from a handler on the other shard.
            sent = await clients[0].call("tell_user", {"user": user, "order": 8}, timeout=10)
            assert sent == 2
            for client in mine.values():
                assert (await client.receive("shipped", timeout=5))["order_id"] == 8
            status, answer = await api(
                cluster.port, "POST", "/api/presence", {"users": [user], "rooms": ["orders"]}, KEY
            )
            assert answer == {"users": {user: 2}, "rooms": {"orders": 2}}
        finally:
            for client in mine.values():
                await client.close()

        target = placed[1][0]
        status, answer = await api(
            cluster.port,
            "POST",
            "/api/publish",
            {"connection": str(target.conn_id), "event": "direct", "payload": {"x": 1}},
            KEY,
        )
        assert (status, answer) == (200, {"delivered": 1})
        assert await target.receive("direct", timeout=5) == {"x": 1}
        with pytest.raises(TimeoutError):
            await placed[0][0].receive("direct", timeout=0.3)

        status, answer = await api(cluster.port, "GET", "/api/rooms/orders/members", key=KEY)
        assert status == 200 and answer["count"] == 2
        assert {m["id"] for m in answer["members"]} == {str(c.conn_id) for c in clients}


async def test_batch_unknown_room_and_disconnect(cluster: ClusterProcess) -> None:
    async with Pool(cluster.url(), token=True, users="batch") as pool:
        placed = await pool.on_shards([0, 1])
        clients = await joined(pool, placed, "batch-room")
        status, answer = await api(
            cluster.port,
            "POST",
            "/api/batch",
            {
                "messages": [
                    {"room": "batch-room", "event": "b", "payload": {"i": 0}},
                    {"room": "no-such-room", "event": "b", "payload": {"i": 1}},
                    {
                        "room": "batch-room",
                        "event": "b",
                        "payload": {"i": 2},
                        "exclude": [str(clients[0].conn_id)],
                    },
                ]
            },
            KEY,
        )
        assert status == 200
        assert answer == {"results": [{"delivered": 2}, {"delivered": 0}, {"delivered": 1}]}
        assert await receive_n(clients[0], "b", 1, 5) == [{"i": 0}]
        assert await receive_n(clients[1], "b", 2, 5) == [{"i": 0}, {"i": 2}]

        victim = placed[1][0]
        status, answer = await api(
            cluster.port,
            "POST",
            "/api/disconnect",
            {"connection": str(victim.conn_id), "reason": "kicked"},
            KEY,
        )
        assert (status, answer) == (200, {"disconnected": 1})
        await asyncio.wait_for(victim.wait_closed(), 5)


async def test_emitter_over_http_keeps_order_among_handler_broadcasts(
    cluster: ClusterProcess,
) -> None:
    """A handler streams numbered broadcasts to a room while an Emitter pushes its own: every
    member, on either shard, sees one and the same order, and each source in its send order."""
    count = 40
    async with Pool(cluster.url(), token=True, users="order") as pool:
        placed = await pool.on_shards({0: 2, 1: 2})
        clients = await joined(pool, placed, "ordered")
        async with Emitter(f"http://127.0.0.1:{cluster.port}", api_key=KEY) as emitter:

            async def push() -> None:
                for n in range(count):
                    await emitter.broadcast("ordered", "seq", {"source": "emitter", "n": n})

            streamed = clients[0].call("stream", {"room": "ordered", "count": count}, timeout=30)
            await asyncio.gather(push(), streamed)
        seen = [await receive_n(client, "seq", 2 * count, 20) for client in clients]
    for sequence in seen:
        assert sequence == seen[0], "members saw different orders"
        for source in ("handler", "emitter"):
            assert [m["n"] for m in sequence if m["source"] == source] == list(range(count))


async def test_refusals(cluster: ClusterProcess) -> None:
    port = cluster.port
    message: dict[str, Any] = {"room": "r", "event": "e", "payload": {}}
    assert (await api(port, "POST", "/api/publish", message))[0] == 401
    assert (await api(port, "POST", "/api/publish", message, "wrong-key"))[0] == 401
    status, answer = await api(port, "POST", "/api/publish", key=KEY, raw=b"{not json")
    assert status == 400 and "not JSON" in answer["reason"]
    status, answer = await api(port, "POST", "/api/publish", {"event": "e"}, KEY)
    assert status == 400 and "exactly one" in answer["reason"]
    status, answer = await api(
        port, "POST", "/api/publish", {"room": "r", "event": "__connect__"}, KEY
    )
    assert status == 400 and "system event" in answer["reason"]
    status, answer = await api(
        port,
        "POST",
        "/api/batch",
        {"messages": [message, {"room": "r", "event": "e", "payload": {"big": "x" * 5000}}]},
        KEY,
    )
    assert status == 413 and answer["reason"].startswith("messages[1]: ")
    status, answer = await api(
        port,
        "POST",
        "/api/publish",
        {"user": "u", "event": "shipped", "payload": {"order_id": "x"}},
        KEY,
    )
    assert status == 422 and answer["details"][0]["loc"] == ["order_id"]
    assert (await api(port, "GET", "/api/publish", key=KEY))[0] == 405
    assert (await api(port, "POST", "/api/nothing", {}, KEY))[0] == 404
    status, document = await api(port, "GET", "/api/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"
    assert "/api/publish" in document["paths"]

    with pytest.raises(EmitterError) as refused:
        async with Emitter(f"http://127.0.0.1:{port}", api_key="wrong") as emitter:
            await emitter.broadcast("r", "e", {})
    assert refused.value.status == 401
    with SyncEmitter(f"http://127.0.0.1:{port}", api_key=KEY) as sync_emitter:
        with pytest.raises(EmitterError) as too_large:
            sync_emitter.broadcast("r", "e", {"big": "x" * 5000})
        assert too_large.value.status == 413
        assert sync_emitter.broadcast("r", "e", {"small": 1}) == 0


async def raw_exchange(port: int, head: bytes) -> bytes:
    """Send a request head alone (no body) and read the answer until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_body_limits_answer_before_the_body(cluster: ClusterProcess) -> None:
    auth = f"Authorization: Bearer {KEY}\r\n".encode()
    huge = await raw_exchange(
        cluster.port,
        b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 999999999\r\n\r\n",
    )
    assert huge.startswith(b"HTTP/1.1 413 "), huge
    unsized = await raw_exchange(
        cluster.port, b"POST /api/publish HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    )
    assert unsized.startswith(b"HTTP/1.1 411 "), unsized
    anonymous = await raw_exchange(
        cluster.port, b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n"
    )
    assert anonymous.startswith(b"HTTP/1.1 401 ") and b"www-authenticate: Bearer" in anonymous


async def test_api_is_off_without_a_key() -> None:
    cluster = launch()
    try:
        status, _ = await api(
            cluster.port, "POST", "/api/publish", {"room": "r", "event": "e"}, KEY
        )
        assert status == 405  # not served: a plain request like any other path
        status, _ = await api(cluster.port, "GET", "/api/openapi.json")
        assert status == 404
    finally:
        cluster.kill()
