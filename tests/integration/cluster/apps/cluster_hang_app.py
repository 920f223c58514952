"""An app whose ``hang`` handler blocks its shard's event loop (``time.sleep``), for the
liveness tests. ``socketspec-cluster cluster_hang_app:app``."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from socketspec import Connection, SocketApp

app = SocketApp()


class Hang(BaseModel):
    seconds: float


@app.on("whoami")
async def whoami(conn: Connection, payload: dict[str, Any]) -> dict[str, Any]:
    return {"shard": app.server_info.get("shard")}


@app.on("hang")
async def hang(conn: Connection, payload: Hang) -> None:
    # Deliberately blocks the loop, so that the shard goes silent.
    time.sleep(payload.seconds)  # noqa: ASYNC251
