"""Serving an ASGI app of a peer on uvicorn with uvloop, on a port picked by the kernel.

Shared by bench/peers/socketio_app.py and bench/peers/fastapi_app.py (run from their own
virtual environments, with this directory on ``sys.path`` as the script's own). Binds
127.0.0.1 itself (``--port 0`` picks a free port), hands the socket to uvicorn, and
prints "NAME (pid N) listening on ws://127.0.0.1:PORT/PATH" once uvicorn serves, which is
the line bench/servers.py waits for. uvicorn stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from importlib.metadata import version
from typing import Any

import uvicorn
import uvloop

STARTUP_TIMEOUT = 30.0


def parse_args(description: str, *, redis: bool = False) -> argparse.Namespace:
    """``--host``, ``--port``, and ``--redis URL`` for a peer that can share rooms."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    if redis:
        parser.add_argument(
            "--redis", metavar="URL", help="share rooms with other nodes through this Redis"
        )
    return parser.parse_args()


def serve(
    app: Any, name: str, path: str, description: str, args: argparse.Namespace | None = None
) -> None:
    args = args or parse_args(description)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    # uvicorn's defaults otherwise (its "auto" HTTP and WebSocket protocols, pings every
    # 20 s); no access log, and a bounded drain on shutdown.
    config = uvicorn.Config(
        app,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=2048,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + STARTUP_TIMEOUT
        # uvicorn only sets a flag once it serves: poll it (bounded).
        while not server.started and not task.done() and loop.time() < stop_at:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if server.started:
            print(
                f"{name} on uvicorn {version('uvicorn')} (pid {os.getpid()}) "
                f"listening on ws://{args.host}:{port}{path}",
                flush=True,
            )
        await task

    uvloop.run(main())
