"""Over real sockets: a recovering connection's replay, far larger than --max-outbound, is
written as fast as the client reads it, never dropped (no 4008), then live traffic."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from shardkit import echo_app
from websockets.asyncio.client import connect

from socketspec import Connection, Recovery
from socketspec.rooms import Room

KIB = 1024
MESSAGES = 400  # 400 x 1 KiB: more than six times --max-outbound


async def next_event(ws: Any, event: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["event"] == event:
                return message


async def test_a_replay_past_max_outbound_waits_for_the_reader(start_shard) -> None:
    app = echo_app(
        rooms=[Room("hall", history_size=1000, history_bytes=8 * 1024 * KIB)],
        recovery=Recovery(secret="backpressure-test"),
    )

    @app.on("enter")
    async def enter(conn: Connection) -> str:
        await app.rooms.join(conn, "hall")
        return conn.id

    @app.on("say")
    async def say(conn: Connection, payload: dict[str, Any]) -> None:
        await app.rooms.broadcast("hall", "said", payload)

    shard = await start_shard(app, max_outbound=64 * KIB)
    url = f"ws://127.0.0.1:{shard.port}/ws"
    async with connect(url) as first:
        greeting = await next_event(first, "__connect__")
        conn_id = greeting["payload"]["conn_id"]
        await first.send(json.dumps({"event": "enter", "ack": 1}))
        token = (await next_event(first, "__recovery__"))["payload"]["token"]
        await next_event(first, "__ack__")
    pad = "p" * KIB
    async with connect(url) as speaker:
        await next_event(speaker, "__connect__")
        for n in range(MESSAGES):
            await speaker.send(json.dumps({"event": "say", "payload": {"n": n, "pad": pad}}))
        await speaker.send(json.dumps({"event": "echo", "payload": {}, "ack": "done"}))
        await next_event(speaker, "__ack__")
        # The reader's socket buffers stay small: the server has to wait for it.
        async with connect(f"{url}?recover={quote(token)}", max_queue=4) as back:
            greeting = await next_event(back, "__connect__")
            assert greeting["payload"]["conn_id"] == conn_id
            assert greeting["payload"]["recovered"] is True
            await asyncio.sleep(0.5)  # let the replay pile up against the slow reader
            received = []
            for _ in range(MESSAGES):
                message = await next_event(back, "said")
                received.append(message["payload"]["n"])
            assert received == list(range(MESSAGES))
            await speaker.send(json.dumps({"event": "say", "payload": {"n": -1, "pad": ""}}))
            assert (await next_event(back, "said"))["payload"]["n"] == -1
    assert app.disconnects.get(conn_id) != "slow_consumer"
