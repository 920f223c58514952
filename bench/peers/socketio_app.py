"""The benchmarks' peer on ``python-socketio``: echo, join, shout to a room.

An ``AsyncServer`` (ASGI mode) on uvicorn with uvloop, serving the events of
bench/apps/bench_app.py in Socket.IO's own envelope (Engine.IO v4, Socket.IO protocol
v5), as its users write them:

- ``echo``: ``sio.emit("echo", data, to=sid)`` back to the sender;
- ``join``: ``sio.enter_room(sid, "hall")``; the handler returns ``{"room": "hall"}``,
  the ack (``431[{"room":"hall"}]`` to a client's ``421["join",{}]``);
- ``shout``: ``sio.emit("said", data, room="hall")``.

Everything else is the library's defaults (pings every 25 s, handlers run as tasks).

With ``--redis URL`` (bench/nodes.py runs two such nodes), the server's client manager is
``socketio.AsyncRedisManager(URL)``: rooms and broadcasts shared with every node on that
Redis, as python-socketio's documentation sets it up.

    python bench/peers/socketio_app.py [--port 0] [--redis redis://127.0.0.1:6379/0]

Prints "python-socketio VERSION on uvicorn VERSION (pid N) listening on
ws://127.0.0.1:PORT/socket.io/" (clients connect to
``/socket.io/?EIO=4&transport=websocket``). Run from its own virtual environment
(bench/peers/requirements-python-socketio.txt) by bench/run.py.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import socketio
from serving import parse_args, serve

ROOM = "hall"
DESCRIPTION = "python-socketio peer for the benchmarks"
ARGS = parse_args(DESCRIPTION, redis=True)

sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(ARGS.redis) if ARGS.redis else None,
    logger=False,
    engineio_logger=False,
)
app = socketio.ASGIApp(sio)


@sio.on("echo")
async def echo(sid: str, data: Any) -> None:
    await sio.emit("echo", data, to=sid)


@sio.on("join")
async def join(sid: str, data: Any) -> dict[str, str]:
    await sio.enter_room(sid, ROOM)
    return {"room": ROOM}


@sio.on("shout")
async def shout(sid: str, data: Any) -> None:
    await sio.emit("said", data, room=ROOM)


if __name__ == "__main__":
    name = f"python-socketio {version('python-socketio')}"
    if ARGS.redis:
        name += f" with AsyncRedisManager (redis {version('redis')})"
    serve(app, name, "/socket.io/", DESCRIPTION, ARGS)
