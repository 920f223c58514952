"""The emitting worker of bench/emitter.py: a separate process with only Redis, pushing
``said`` messages into the room ``hall`` as fast as its emitter accepts them.

    python bench/emitter_worker.py socketspec|python-socketio REDIS_URL COUNT SIZE

``socketspec`` uses ``socketspec.Emitter(REDIS_URL)``; ``python-socketio`` its write-only
``socketio.AsyncRedisManager(REDIS_URL, write_only=True)`` (run from the peer's own
environment). One message first (the warm-up, which the harness waits for at every
member), then a line ``start <time.time()>``, then ``COUNT`` messages, then one JSON line
with what it sent and how long publishing took. Each message is awaited before the next:
the emitter's own order and pace."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

ROOM = "hall"


async def main() -> None:
    kind, url, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    payload: dict[str, Any] = {"t": "0" * 19, "pad": "x" * max(0, size - 60)}
    if kind == "socketspec":
        from socketspec import Emitter

        emitter = Emitter(url)

        async def send() -> None:
            await emitter.broadcast(ROOM, "said", payload)

        async def close() -> None:
            await emitter.close()
    else:
        import socketio

        manager = socketio.AsyncRedisManager(url, write_only=True)

        async def send() -> None:
            await manager.emit("said", payload, room=ROOM, namespace="/")

        async def close() -> None:
            return None

    await send()
    await asyncio.to_thread(sys.stdin.readline)  # "go": every member has the warm-up
    started = time.time()
    print(f"start {started}", flush=True)
    begun = time.perf_counter()
    for _ in range(count):
        await send()
    seconds = time.perf_counter() - begun
    await close()
    print(json.dumps({"sent": count, "publish_seconds": seconds}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
