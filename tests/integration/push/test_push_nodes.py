"""Pushing into two nodes (2 shards each) that share a real ``redis-server``: a separate worker
process with ``SyncEmitter(redis_url)``, a REST-style caller of the HTTP publish API, and the
REST routes of a FastAPI service under uvicorn that push with ``Emitter`` (over Redis, and over
the publish API) each reach a room, a user with connections on both shards of both nodes, and
one connection on the other node; an emitter's messages keep their order; and with Redis down
the emitter raises and the API answers 503."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from asgikit import UvicornProcess
from clusterkit import Node, RedisServer, receive_n, start_nodes, token_for
from pushkit import APPS, ENV, KEY, PUSH_APP, api, call_api

from socketspec import Emitter, EmitterUnavailableError
from socketspec.client import Client, connect


async def run_worker(url: str, plan: list[dict[str, Any]], key: str | None = None) -> list[Any]:
    """Run apps/push_worker.py with ``plan``; its results."""
    args = [sys.executable, str(APPS / "push_worker.py"), url, *([key] if key else [])]
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(json.dumps(plan).encode()), 30)
    assert proc.returncode == 0, err.decode()
    return list(json.loads(out))


async def spread(nodes: list[Node], user: str) -> dict[tuple[int, int], Client]:
    """One connection of ``user`` on each shard of each node: (node index, shard) -> client."""
    placed: dict[tuple[int, int], Client] = {}
    for index, node in enumerate(nodes):
        attempts = 0
        while len([k for k in placed if k[0] == index]) < 2:
            attempts += 1
            assert attempts < 100, "connections did not cover both shards"
            client = await connect(node.url(), token=token_for(user), open_timeout=10)
            key = (index, int(client.greeting["shard"]))
            if key in placed:
                await client.close()
            else:
                placed[key] = client
    return placed


@pytest.fixture
async def everywhere(nodes: list[Node]) -> Any:
    """Four connections of user "dana" (both shards of both nodes), in room "news"."""
    placed = await spread(nodes, "dana")
    for client in placed.values():
        await client.call("join", {"room": "news"}, timeout=10)
    try:
        yield placed
    finally:
        await asyncio.gather(*(c.close() for c in placed.values()), return_exceptions=True)


async def test_worker_with_only_redis_reaches_every_node(
    nodes: list[Node], redis_server: RedisServer, everywhere: dict[tuple[int, int], Client]
) -> None:
    clients = list(everywhere.values())
    target = everywhere[(1, 1)]
    results = await run_worker(
        redis_server.url,
        [
            {"call": "broadcast", "args": ["news", "headline", {"text": "hi"}]},
            {"call": "emit_to_user", "args": ["dana", "shipped", {"order_id": 3}], "model": True},
            {"call": "emit_to", "args": [str(target.conn_id), "direct", {"only": "you"}]},
            {"call": "members", "args": ["news"]},
        ],
    )
    broadcast_nodes, user_nodes, direct, members = results
    assert broadcast_nodes == 2 and user_nodes == 2  # both nodes' home actors received them
    assert direct is True
    assert {m["id"] for m in members} == {str(c.conn_id) for c in clients}
    for client in clients:
        assert await client.receive("headline", timeout=5) == {"text": "hi"}
        assert await client.receive("shipped", timeout=5) == {"order_id": 3, "carrier": "post"}
    assert await target.receive("direct", timeout=5) == {"only": "you"}
    for client in clients:
        if client is not target:
            with pytest.raises(TimeoutError):
                await client.receive("direct", timeout=0.2)


async def test_rest_caller_reaches_every_node(
    nodes: list[Node], everywhere: dict[tuple[int, int], Client]
) -> None:
    """What a REST route does: call node 0's publish API; node 1's connections get it too."""
    port = nodes[0].process.port
    clients = list(everywhere.values())
    status, answer = await api(
        port,
        "POST",
        "/api/publish",
        {"user": "dana", "event": "shipped", "payload": {"order_id": 4}},
        KEY,
    )
    # This node's two connections, plus one for the other node that received it.
    assert (status, answer) == (200, {"delivered": 3})
    status, answer = await api(
        port,
        "POST",
        "/api/publish",
        {"room": "news", "event": "headline", "payload": {"n": 2}},
        KEY,
    )
    assert (status, answer) == (200, {"delivered": 3})
    target = everywhere[(1, 0)]
    status, answer = await api(
        port,
        "POST",
        "/api/publish",
        {"connection": str(target.conn_id), "event": "direct", "payload": {"n": 3}},
        KEY,
    )
    assert (status, answer) == (200, {"delivered": 1})
    for client in clients:
        assert (await client.receive("shipped", timeout=5))["order_id"] == 4
        assert await client.receive("headline", timeout=5) == {"n": 2}
    assert await target.receive("direct", timeout=5) == {"n": 3}
    status, answer = await api(port, "GET", "/api/rooms/news/members", key=KEY)
    assert answer["count"] == 4
    assert {m.get("node") for m in answer["members"]} >= {nodes[1].node_id}
    status, answer = await api(port, "POST", "/api/presence", {"users": ["dana"]}, KEY)
    assert answer["users"] == {"dana": 4}


@pytest.fixture(params=["redis", "http"])
def rest_service(
    request: pytest.FixtureRequest, nodes: list[Node], redis_server: RedisServer
) -> Iterator[tuple[str, UvicornProcess]]:
    """apps/rest_app.py under uvicorn, its ``Emitter`` on the cluster's Redis or on node 0's
    publish API: (transport, process)."""
    if request.param == "redis":
        env = {**ENV, "PUSH_URL": redis_server.url}
    else:
        env = {**ENV, "PUSH_URL": f"http://127.0.0.1:{nodes[0].process.port}", "PUSH_API_KEY": KEY}
    service = UvicornProcess(["rest_app:api"], APPS, env)
    try:
        service.wait_ready()
        yield request.param, service
    finally:
        service.stop()
        service.cleanup()


async def test_fastapi_route_pushes_into_the_cluster(
    rest_service: tuple[str, UvicornProcess],
    nodes: list[Node],
    everywhere: dict[tuple[int, int], Client],
) -> None:
    """An HTTP call to a FastAPI route makes it push with ``Emitter``: to a room and to a user
    with connections on both shards of both nodes, and to one connection on node 1."""
    transport, service = rest_service
    port = service.port
    clients = list(everywhere.values())

    async def post(path: str, body: Any = None) -> tuple[int, Any]:
        return await asyncio.to_thread(call_api, port, "POST", path, body or {})

    status, answer = await post("/rooms/news/headline", {"text": "from REST"})
    assert status == 200
    status, shipped = await post("/users/dana/orders/7/ship")
    assert status == 200
    target = everywhere[(1, 1)]
    status, direct = await post(f"/connections/{target.conn_id}/direct", {"only": "you"})
    assert (status, direct) == (200, {"sent": True})
    # Over Redis the counts are the nodes that received it; over the API, node 0's own two
    # connections plus one for the other node.
    expected = 2 if transport == "redis" else 3
    assert answer == shipped == {"delivered": expected}
    for client in clients:
        assert await client.receive("headline", timeout=5) == {"text": "from REST"}
        # The route's pydantic model, serialised as the cluster's declared model has it.
        assert await client.receive("shipped", timeout=5) == {"order_id": 7, "carrier": "post"}
    assert await target.receive("direct", timeout=5) == {"only": "you"}
    for client in clients:
        if client is not target:
            with pytest.raises(TimeoutError):
                await client.receive("direct", timeout=0.2)


async def test_emitter_order_among_handler_broadcasts_across_nodes(
    nodes: list[Node], redis_server: RedisServer, everywhere: dict[tuple[int, int], Client]
) -> None:
    """An emitter over Redis and a handler on node 0 both stream to "news": every member of a
    node sees one order (the node's home actor for the room orders both), and everyone sees
    each source in its send order."""
    count = 30
    clients = everywhere
    async with Emitter(redis_server.url) as emitter:

        async def push() -> None:
            for n in range(count):
                await emitter.broadcast("news", "seq", {"source": "emitter", "n": n})

        streamed = clients[(0, 0)].call("stream", {"room": "news", "count": count}, timeout=30)
        await asyncio.gather(push(), streamed)
    seen = {key: await receive_n(client, "seq", 2 * count, 20) for key, client in clients.items()}
    for node in (0, 1):
        assert seen[(node, 0)] == seen[(node, 1)], f"node {node}'s shards saw different orders"
    for sequence in seen.values():
        for source in ("handler", "emitter"):
            assert [m["n"] for m in sequence if m["source"] == source] == list(range(count))


async def test_disconnect_a_user_on_every_node(
    nodes: list[Node], redis_server: RedisServer
) -> None:
    placed = await spread(nodes, "eve")
    try:
        results = await run_worker(
            redis_server.url,
            [{"call": "disconnect", "kwargs": {"user_id": "eve", "reason": "banned"}}],
        )
        assert results == [4]
        for client in placed.values():
            await asyncio.wait_for(client.wait_closed(), 5)
    finally:
        await asyncio.gather(*(c.close() for c in placed.values()), return_exceptions=True)


@pytest.fixture
def lone_redis(tmp_path: Any) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_redis_down_raises_and_answers_503(lone_redis: RedisServer) -> None:
    started = start_nodes(
        1,
        PUSH_APP,
        2,
        "--redis",
        lone_redis.url,
        "--redis-node-ttl",
        "2",
        "--api-key",
        KEY,
        env=ENV,
    )
    try:
        port = started[0].process.port
        message = {"room": "r", "event": "e", "payload": {}}
        assert (await api(port, "POST", "/api/publish", message, KEY))[0] == 200
        lone_redis.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (status := (await api(port, "POST", "/api/publish", message, KEY))[0]) != 503:
            assert status == 200 and loop.time() < deadline, status
            await asyncio.sleep(0.1)
        status, answer = await api(port, "POST", "/api/publish", message, KEY)
        assert status == 503 and "Redis" in answer["reason"]
        async with Emitter(lone_redis.url, timeout=1) as emitter:
            with pytest.raises(EmitterUnavailableError, match="unreachable"):
                await emitter.broadcast("r", "e", {})
        results = await run_worker(lone_redis.url, [{"call": "broadcast", "args": ["r", "e", {}]}])
        assert results[0]["error"] == "EmitterUnavailableError"
    finally:
        for node in started:
            node.kill()
