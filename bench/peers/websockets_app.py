"""The benchmarks' peer on the ``websockets`` library: echo, join, shout to a room.

The same three events as bench/apps/bench_app.py, in socketspec's envelope
(``{"event": ..., "payload": ...}``), with the same JSON library (orjson) and the same
event loop (uvloop):

- ``echo``: the payload goes back to its sender as ``{"event":"echo","payload":...}``;
- ``join``: the connection joins the room ``hall`` (a set of connections); a message
  with ``"ack"`` is answered ``{"event":"__ack__","ack":<same>,"payload":{"room":"hall"}}``;
- ``shout``: ``{"event":"said","payload":...}`` is serialised once and sent to every
  member with the library's own ``websockets.broadcast()``.

Compression is off (the load generator does not offer it anyway); keepalive pings and
every other setting are the library's defaults.

    python bench/peers/websockets_app.py [--port 0] [--loop uvloop|asyncio]

Prints "websockets VERSION app (pid N) listening on ws://127.0.0.1:PORT/ws" once it
listens, and stops on SIGTERM or SIGINT. bench/run.py runs it from its own virtual
environment (bench/peers/requirements-websockets.txt); bench/echo.py from the project's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from importlib.metadata import version
from typing import Any

import orjson
import uvloop
from websockets import broadcast
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

ROOM = "hall"
rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            try:
                envelope = orjson.loads(message)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(envelope, dict):
                continue
            event = envelope.get("event")
            payload: Any = envelope.get("payload") or {}
            if event == "echo":
                await ws.send(orjson.dumps({"event": "echo", "payload": payload}), text=True)
            elif event == "join":
                rooms.setdefault(ROOM, set()).add(ws)
                if "ack" in envelope:
                    ack = {"event": "__ack__", "ack": envelope["ack"], "payload": {"room": ROOM}}
                    await ws.send(orjson.dumps(ack), text=True)
            elif event == "shout":
                said = orjson.dumps({"event": "said", "payload": payload}).decode()
                broadcast(rooms.get(ROOM, ()), said)
    except ConnectionClosed:
        pass
    finally:
        for members in rooms.values():
            members.discard(ws)


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(handler, host, port, compression=None, backlog=2048) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(
            f"websockets {version('websockets')} app (pid {os.getpid()}) "
            f"listening on ws://{host}:{bound}/ws",
            flush=True,
        )
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="websockets peer for the benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))
