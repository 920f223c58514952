"""The benchmarks' peer on ``picows``, the fastest WebSocket library for asyncio (Cython).

The same three events as bench/apps/bench_app.py, in socketspec's envelope
(``{"event": ..., "payload": ...}``), with the same JSON library (orjson) and the same
event loop (uvloop):

- ``echo``: the payload goes back to its sender as ``{"event":"echo","payload":...}``;
- ``join``: the connection joins the room ``hall`` (a set of connections); a message
  with ``"ack"`` is answered ``{"event":"__ack__","ack":<same>,"payload":{"room":"hall"}}``;
- ``shout``: ``{"event":"said","payload":...}`` is serialised once and sent to every
  member with the library's ``WSTransport.send`` (picows frames in C as it writes; it has
  no call that frames one message for several connections).

A ``WSListener`` per connection, ``on_ws_frame`` called by picows for each frame.
Compression is off (picows has none), the library's defaults otherwise (its automatic
pong to a ping on; no automatic pings).

    python bench/peers/picows_app.py [--port 0] [--loop uvloop|asyncio]

Prints "picows VERSION app (pid N) listening on ws://127.0.0.1:PORT/ws" once it listens,
and stops on SIGTERM or SIGINT. bench/run.py runs it from its own virtual environment
(bench/peers/requirements-picows.txt).
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
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

ROOM = "hall"
TEXT = WSMsgType.TEXT
rooms: dict[str, set[WSTransport]] = {}


class Peer(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        try:
            envelope = orjson.loads(frame.get_payload_as_memoryview())
        except orjson.JSONDecodeError:
            return
        if not isinstance(envelope, dict):
            return
        event = envelope.get("event")
        payload: Any = envelope.get("payload") or {}
        if event == "echo":
            transport.send(TEXT, orjson.dumps({"event": "echo", "payload": payload}))
        elif event == "join":
            rooms.setdefault(ROOM, set()).add(transport)
            if "ack" in envelope:
                ack = {"event": "__ack__", "ack": envelope["ack"], "payload": {"room": ROOM}}
                transport.send(TEXT, orjson.dumps(ack))
        elif event == "shout":
            said = orjson.dumps({"event": "said", "payload": payload})
            for member in rooms.get(ROOM, ()):
                member.send(TEXT, said)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for members in rooms.values():
            members.discard(transport)


def listener(request: WSUpgradeRequest) -> Peer:
    return Peer()


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await ws_create_server(listener, host, port, backlog=2048)
    bound = server.sockets[0].getsockname()[1]
    print(
        f"picows {version('picows')} app (pid {os.getpid()}) listening on ws://{host}:{bound}/ws",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        server.close()
        for members in rooms.values():
            for member in list(members):
                member.disconnect()
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="picows peer for the benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    if args.loop == "uvloop":
        uvloop.run(main(args.host, args.port))
    else:
        asyncio.run(main(args.host, args.port))
