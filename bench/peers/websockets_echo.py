"""The benchmark's peer: the same echo event on the ``websockets`` library.

Parses each message as a JSON envelope and, for ``{"event":"echo","payload":{...}}``,
sends back ``{"event":"echo","payload":<the same payload>}`` as a text message: the
work bench/apps/echo_app.py asks of socketspec, with the same JSON library (orjson)
and the same event loop (uvloop). Compression is off (the load generator does not
offer it anyway); keepalive pings and every other setting are the library's defaults.

    python bench/peers/websockets_echo.py [--port 0] [--loop uvloop|asyncio]

Prints "websockets echo (pid N) listening on ws://127.0.0.1:PORT/ws" once it
listens, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from importlib.metadata import version

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def handler(ws: ServerConnection) -> None:
    try:
        async for message in ws:
            try:
                envelope = orjson.loads(message)
            except orjson.JSONDecodeError:
                continue
            if isinstance(envelope, dict) and envelope.get("event") == "echo":
                reply = {"event": "echo", "payload": envelope.get("payload") or {}}
                await ws.send(orjson.dumps(reply), text=True)
    except ConnectionClosed:
        pass


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serve(handler, host, port, compression=None, backlog=2048) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(
            f"websockets {version('websockets')} echo (pid {os.getpid()}) "
            f"listening on ws://{host}:{bound}/ws",
            flush=True,
        )
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="websockets echo peer for bench/echo.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))
