"""The ASGI adapter's echo entry on uvicorn, for the conformance suite.

    python bench/asgi_echo.py [--ws websockets-sansio|wsproto|websockets] [--port 0]

Serves ``socketspec.adapters.asgi.echo_app()`` (every message back as it came, on every
path) on uvicorn with the WebSocket implementation named by ``--ws`` (uvicorn's default,
``auto``, is ``websockets-sansio`` when the websockets library is installed). Binds
127.0.0.1 itself (``--port 0`` picks a free port) and prints "asgi echo on uvicorn VERSION
(--ws IMPL) listening on ws://127.0.0.1:PORT/" once uvicorn serves, the line
bench/servers.py waits for. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from importlib.metadata import version

import uvicorn

from socketspec.adapters.asgi import echo_app

STARTUP_TIMEOUT = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ws", default="auto", help="uvicorn's WebSocket implementation")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(echo_app(), ws=args.ws, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + STARTUP_TIMEOUT
        # uvicorn only sets a flag once it serves: poll it (bounded).
        while not server.started and not task.done() and loop.time() < stop_at:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if server.started:
            print(
                f"asgi echo on uvicorn {version('uvicorn')} (--ws {args.ws}) "
                f"listening on ws://{args.host}:{port}/",
                flush=True,
            )
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
